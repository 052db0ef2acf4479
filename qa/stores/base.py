"""The Store protocol (what retrieval and the server read) and the IndexWriter (what ingest
hands over), whatever holds the index.

Two implementations: `qa.stores.faiss.store.FaissStore` (an index folder on one machine, the
default) and `qa.stores.postgres.store.PostgresStore` (PostgreSQL + pgvector, shared by many
servers); `qa.stores.open_store` and `open_writer` pick one from the settings, so neither the
pipeline nor ingest names a backend. Ingest asks the writer what is indexed already
(`Previous`), embeds only what changed, and hands an `IndexUpdate` back; the writer decides how
to persist it (a complete folder swapped in, or one transaction) and whether the index it holds
can be updated in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from qa.types import Chunk, Document, DocumentInfo


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

    def document_list(self) -> tuple[DocumentInfo, ...]:
        """Every indexed document's id, title, source and counts (no text), sorted by id."""
        ...

    def chunk(self, chunk_id: str) -> Chunk:
        """A chunk by id; DocumentNotFoundError when it is not indexed."""
        ...

    def chunks(self) -> tuple[Chunk, ...]:
        """Every chunk, documents by id and chunks in text order."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Previous:
    """What an index already holds, as far as an update needs to know.

    `hashes` (doc id -> content hash) is empty when the index is (re)built from scratch, and
    `reason` says why it is or is not updated in place.
    """

    hashes: Mapping[str, str]
    n_chunks: int
    reason: str

    @property
    def full(self) -> bool:
        return not self.hashes


@dataclass(frozen=True)
class IndexUpdate:
    """What ingest hands a store: the corpus as read now, and vectors for its changed part.

    `fresh_ids` are the new and changed documents; `chunks` are theirs (documents by id, chunks
    in text order) and vector row i belongs to chunk i. Documents not in `fresh_ids` keep the
    chunks and vectors the store holds; indexed documents missing from `documents` are removed.
    """

    documents: tuple[Document, ...]
    fresh_ids: frozenset[str]
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    files: Mapping[str, str]
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class Written:
    """The outcome of `IndexWriter.write`: chunks in the index, and whether anything changed."""

    n_chunks: int
    written: bool


class IndexWriter(Protocol):
    """One update of an index, opened with the manifest of the build (a context manager)."""

    previous: Previous

    def write(self, update: IndexUpdate) -> Written:
        """Persist the update all at once (readers see the old index or the new, never a mix)."""
        ...

    def __enter__(self) -> IndexWriter: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...
