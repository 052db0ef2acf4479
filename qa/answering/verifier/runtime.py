"""The answer verifier at serve time: onnxruntime and `tokenizers`, never torch.

A cross-encoder that qa trains itself (`qa train-verifier`, qa/training/) reads the question
against one sentence and gives, from one forward pass, the probability that the sentence
answers the question and the short answer's span inside it. The weights ship inside the
package (`model/`: `verifier.onnx`, `tokenizer.json`, `meta.json`, `combiner.json`, `CARD.md`),
so the install stays offline.

    >>> v = load_verifier()                                   # doctest: +SKIP
    >>> v.verify("Who founded it?", ["Its founder was the chemist Ada Lin."])[0].span_text
    'Ada Lin'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import ConfigError
from qa.resources import VERIFIER_DIR, verifier_version

MODEL_DIR = VERIFIER_DIR
MAX_SPAN_TOKENS = 30


@dataclass(frozen=True)
class Verdict:
    """The verifier's reading of one sentence: P(it answers) and the best short span."""

    probability: float
    span: tuple[int, int] | None  # char offsets of the short answer inside the sentence
    span_text: str | None


@dataclass(frozen=True)
class Combiner:
    """The logistic combination of the verifier's score with the answerer's cheap features,
    and the two thresholds that split answered / closest / abstained (fitted together)."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    abstain_threshold: float
    answer_threshold: float
    guards: frozenset[str]  # the answerer's rules that still earn their keep beside the model

    def probability(self, values: dict[str, float]) -> float:
        z = sum(
            w * (1.0 if f == "bias" else values.get(f, 0.0))
            for f, w in zip(self.features, self.weights, strict=True)
        )
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


class Verifier:
    """Scores (question, sentence) pairs with the ONNX model; safe to share between threads."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        files = {n: folder / n for n in ("verifier.onnx", "tokenizer.json", "meta.json")}
        missing = [n for n, p in files.items() if not p.is_file()]
        if missing:
            raise ConfigError(
                f"The verifier folder {folder} lacks {', '.join(missing)}. Point `verifier` at "
                "a folder written by `qa train-verifier`, or leave it at `builtin`."
            )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        self.meta: dict[str, Any] = json.loads(files["meta.json"].read_text(encoding="utf-8"))
        self.max_tokens = int(self.meta.get("max_tokens", 128))
        self.max_question_tokens = int(self.meta.get("max_question_tokens", 40))
        tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        tokenizer.no_padding()
        # Set once (a setting of the shared object, not per call): a long sentence loses its
        # end, never the question or the closing [SEP], as in training.
        tokenizer.enable_truncation(self.max_tokens, strategy="only_second")
        self._tokenizer = tokenizer
        self._pad = tokenizer.token_to_id("[PAD]") or 0
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(files["verifier.onnx"]), options, providers=["CPUExecutionProvider"]
        )
        combiner = folder / "combiner.json"
        self.combiner = _read_combiner(combiner) if combiner.is_file() else None
        self.version = verifier_version(folder) or "verifier"

    def verify(self, question: str, sentences: Sequence[str]) -> list[Verdict]:
        """One Verdict per sentence, from one batched forward pass."""
        if not sentences:
            return []
        question = self._cap(question)
        encodings = self._tokenizer.encode_batch([(question, s) for s in sentences])
        n = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), n), self._pad, dtype=np.int64)
        mask = np.zeros((len(encodings), n), dtype=np.int64)
        types = np.zeros((len(encodings), n), dtype=np.int64)
        for r, e in enumerate(encodings):
            k = len(e.ids)
            ids[r, :k], mask[r, :k], types[r, :k] = e.ids, 1, e.type_ids
        logit, start, end = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        out = []
        for r, (e, sentence) in enumerate(zip(encodings, sentences, strict=True)):
            prob = float(1.0 / (1.0 + np.exp(-float(logit[r]))))
            span = _best_span(start[r], end[r], e, len(e.ids))
            text = sentence[span[0] : span[1]] if span is not None else None
            out.append(Verdict(prob, span, text))
        return out

    def _cap(self, question: str) -> str:
        """The question cut to the first max_question_tokens tokens, as training cut it."""
        q = self._tokenizer.encode(question, add_special_tokens=False)
        if len(q.ids) > self.max_question_tokens:
            return question[: q.offsets[self.max_question_tokens - 1][1]]
        return question


def _best_span(start: np.ndarray, end: np.ndarray, encoding: Any, n: int) -> tuple[int, int] | None:
    """The highest start+end pair inside the sentence (start <= end, a short span)."""
    seq, offsets = encoding.sequence_ids, encoding.offsets
    inside = np.array([i for i in range(n) if seq[i] == 1 and offsets[i][1] > offsets[i][0]])
    if not len(inside):
        return None
    scores = start[inside][:, None] + end[inside][None, :]
    gap = inside[None, :] - inside[:, None]
    scores = np.where((gap >= 0) & (gap < MAX_SPAN_TOKENS), scores, -np.inf)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return offsets[int(inside[i])][0], offsets[int(inside[j])][1]


def _read_combiner(path: Path) -> Combiner:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Combiner(
        features=tuple(raw["features"]),
        weights=tuple(float(w) for w in raw["weights"]),
        abstain_threshold=float(raw["abstain_threshold"]),
        answer_threshold=float(raw["answer_threshold"]),
        guards=frozenset(raw.get("guards", ())),
    )


@lru_cache(maxsize=4)
def load_verifier(folder: str | None = None, threads: int = 1) -> Verifier:
    """The verifier in `folder` (default: the one shipped in the package), loaded once."""
    return Verifier(Path(folder) if folder else MODEL_DIR, threads=threads)
