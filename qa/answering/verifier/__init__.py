"""The trained answer verifier (onnxruntime at serve time; trained by `qa train-verifier`)."""

from qa.answering.verifier.runtime import Combiner, Verdict, Verifier, load_verifier

__all__ = ["Combiner", "Verdict", "Verifier", "load_verifier"]
