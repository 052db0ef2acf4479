"""Which embedding backends exist, which ones give interchangeable vectors, and what `auto` picks.

bench/embedding.py checks every rule here against torch fp32 on the same texts (its current
figures are in bench/README.md, "Embedding backends"):

- torch fp32, ONNX Runtime fp32 (the exported graph) and OpenVINO fp32 give the same vectors,
  torch bf16 nearly (cosine above the 0.99 bar on SciFact chunks and questions). They form one
  vector space: an index built by one is searched correctly by another.
- ONNX int8 (dynamic quantisation, MatMul weights per channel) is below the 0.99 cosine bar:
  offered when asked for, never picked by `auto`, never mixed with the others.

`auto` tries, in order of measured speed on this kind of CPU, the backends that are installed,
and takes the first that loads and gives its probe vector back (qa.embedding.export).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from qa.errors import ConfigError

log = logging.getLogger(__name__)

AUTO = "auto"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
DTYPES = ("float32", "bfloat16")
# Backend -> (module that must be importable, what to install).
NEEDS = {
    "onnx": ("onnxruntime", "pip install onnxruntime onnx"),
    "onnx-int8": ("onnxruntime", "pip install onnxruntime onnx"),
    "openvino": ("openvino", "pip install -c constraints.txt -e '.[openvino]'"),
}
# (backend, dtype) pairs whose vectors agree at cosine >= 0.99 on the same text; pairs in one
# set may mix (an index from one, questions from another). Everything else is its own space.
_SAME_SPACE = frozenset(
    {("torch", "float32"), ("torch", "bfloat16"), ("onnx", "float32"), ("openvino", "float32")}
)
# What `auto` tries, fastest first on an x86-64 CPU (bench/embedding.py compares them). Every
# entry gives torch fp32's vectors; OpenVINO is left out (slower than onnx on such CPUs); int8
# is below the cosine bar, and its shifted similarities make the extractive answerer abstain
# on answerable questions, though retrieval quality barely moves.
AUTO_ORDER = ("onnx", "torch")


@dataclass(frozen=True)
class BackendChoice:
    """The backend and dtype an embedder runs with, and why."""

    backend: str
    dtype: str
    reason: str


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package is missing
        return False


def missing_package(backend: str) -> str | None:
    """What to install for `backend`, or None when nothing is missing."""
    needs = NEEDS.get(backend)
    if needs and not importable(needs[0]):
        return (
            f"embedding_backend {backend!r} needs the package {needs[0]!r}, which is not "
            f"installed. Run `{needs[1]}` (with torch pinned), or use --embedding-backend torch."
        )
    return None


def vector_space(backend: str, dtype: str) -> str:
    """The name of the space the vectors of (backend, dtype) live in: equal names may mix.

    The shared space keeps torch fp32's name, so caches and indexes written before keep working.
    """
    return "torch|float32" if (backend, dtype) in _SAME_SPACE else f"{backend}|{dtype}"


def compatible_backends(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """True when vectors of (backend, dtype) `a` and `b` may be compared with each other.

    >>> compatible_backends(("torch", "float32"), ("onnx", "float32"))
    True
    >>> compatible_backends(("torch", "float32"), ("onnx-int8", "float32"))
    False
    """
    return vector_space(*a) == vector_space(*b)


_CHOICES: dict[tuple[str, str, str], BackendChoice] = {}
_CHOICE_LOCK = threading.Lock()


def choose(
    model: str, *, dtype: str, device: str, try_load: Callable[[str], object]
) -> BackendChoice:
    """What `auto` runs for this model here: decided (and logged) once per process.

    `try_load(backend)` loads the model on that backend, raising if it cannot run here.
    """
    key = (model, dtype, device)
    with _CHOICE_LOCK:
        if key not in _CHOICES:
            _CHOICES[key] = _choose(dtype=dtype, device=device, try_load=try_load)
            log.info("embedding_backend auto: %s (%s)", _CHOICES[key].backend, _CHOICES[key].reason)
        return _CHOICES[key]


def _choose(*, dtype: str, device: str, try_load: Callable[[str], object]) -> BackendChoice:
    if dtype != "float32":
        return BackendChoice("torch", dtype, f"embedding_dtype {dtype} runs on torch only")
    if device != "cpu":
        return BackendChoice("torch", dtype, f"device {device!r}: the exported backends are CPU")
    skipped: list[str] = []
    for backend in AUTO_ORDER:
        if backend == "torch":
            why = "; ".join(skipped)
            return BackendChoice(
                "torch", dtype, "the fastest that runs here" + (f" ({why})" if why else "")
            )
        missing = missing_package(backend)
        if missing is not None:
            skipped.append(f"{backend}: {NEEDS[backend][0]} not installed")
            continue
        try:
            try_load(backend)
        except Exception as exc:  # a runtime that cannot load here is skipped, not fatal
            log.warning("embedding_backend auto: %s cannot run here (%s)", backend, exc)
            skipped.append(f"{backend}: {type(exc).__name__}")
            continue
        return BackendChoice(
            backend,
            dtype,
            "the fastest installed backend that runs on this CPU and gives torch fp32's "
            "vectors (min cosine 1.0000 on SciFact texts, bench/README.md)"
            + (f"; skipped {'; '.join(skipped)}" if skipped else ""),
        )
    raise ConfigError("no embedding backend can run here")  # AUTO_ORDER ends with torch


def first_choice(*, dtype: str, device: str) -> str:
    """The backend `auto` tries first for this dtype and device, known without loading any
    (it still falls back to torch if that one fails to load)."""
    if dtype != "float32" or device != "cpu":
        return "torch"
    return next(b for b in AUTO_ORDER if b == "torch" or missing_package(b) is None)


def check_names(backend: str, dtype: str) -> None:
    """Refuse an unknown backend or dtype, listing the known ones."""
    if backend != AUTO and backend not in BACKENDS:
        raise ConfigError(
            f"Unknown embedding backend {backend!r}; use one of {', '.join((AUTO, *BACKENDS))}."
        )
    if dtype not in DTYPES:
        raise ConfigError(f"Unknown embedding dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
