"""Optional second stage: a cross-encoder that scores (question, passage) pairs.

Off by default: no cross-encoder ships with its weights offline. Set `reranker` to any
sentence-transformers CrossEncoder name (downloaded by users who are online) or a local folder;
it re-orders the top `rerank_candidates` fused candidates. The cost is one forward pass per
candidate, batched, so the candidate count is the latency knob.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from qa.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)


class Reranker(Protocol):
    """Scores passages for a question; higher is more relevant."""

    name: str

    def score(self, question: str, texts: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder, loaded once on first use."""

    def __init__(self, name: str, *, device: str = "cpu", batch_size: int = 32) -> None:
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    def _load(self) -> CrossEncoder:
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                try:
                    self._model = CrossEncoder(self.name, device=self.device)
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        f"Cannot load the reranker {self.name!r} ({exc}). Give a local folder "
                        "holding a sentence-transformers CrossEncoder, a model name you can "
                        "download, or unset `reranker`."
                    ) from None
                log.info("Loaded reranker %s", self.name)
            return self._model

    def score(self, question: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        model = self._load()
        scores = model.predict(
            [(question, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]


@lru_cache(maxsize=4)
def get_reranker(name: str, device: str = "cpu") -> Reranker:
    """A process-wide shared reranker for a model name or path."""
    return CrossEncoderReranker(name, device=device)
