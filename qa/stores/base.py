"""The Store protocol: what retrieval and the server need from an index, whatever holds it.

Two implementations: `qa.stores.faiss.store.FaissStore` (an index folder on one machine, the
default) and `qa.stores.postgres.store.PostgresStore` (PostgreSQL + pgvector, shared by many
servers). `open_store` picks one from the settings, so the pipeline never names a backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from qa.config import Settings
    from qa.types import Chunk, Document


class Store(Protocol):
    """A loaded index: vector and keyword search plus the chunks and documents behind them."""

    manifest: dict[str, Any]

    @property
    def n_chunks(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, query_vec: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        """The k chunks with the highest inner product with the query vector, best first."""
        ...

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[tuple[Chunk, float]]]:
        """`search` for each row of an (m, dim) matrix."""
        ...

    def keyword_search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """The k best chunks by keyword relevance (BM25 or the store's full-text rank), best first.

        Chunks with no query term do not appear, so the list may be shorter than k.
        """
        ...

    def chunk_vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """The stored, normalised vectors of these chunks, one row per id, in order."""
        ...

    def document(self, doc_id: str) -> Document:
        """A document by id; DocumentNotFoundError when it is not indexed."""
        ...

    def documents(self) -> tuple[Document, ...]:
        """Every indexed document, sorted by id."""
        ...

    def chunk(self, chunk_id: str) -> Chunk:
        """A chunk by id; DocumentNotFoundError when it is not indexed."""
        ...

    def chunks(self) -> tuple[Chunk, ...]:
        """Every chunk, documents by id and chunks in text order."""
        ...

    def close(self) -> None: ...


def open_store(settings: Settings) -> Store:
    """The store the settings name (IndexNotFoundError when there is no index yet)."""
    if settings.store == "postgres":
        from qa.stores.postgres.store import PostgresStore

        return PostgresStore.load(settings)
    from qa.stores.faiss.store import FaissStore

    return FaissStore.load(settings.index_dir, settings)
