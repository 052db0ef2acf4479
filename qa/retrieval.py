"""Question -> ranked Passages: dense retrieval over the store's FAISS index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qa.types import Passage

if TYPE_CHECKING:
    from qa.embedding import Embedder
    from qa.store import FaissStore


class Retriever:
    """Embeds the question and returns the top-k chunks as 1-based ranked Passages."""

    def __init__(self, store: FaissStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def retrieve(self, question: str, k: int) -> tuple[Passage, ...]:
        """The k chunks most similar to the question, best first (score = cosine similarity)."""
        vector = self.embedder.embed_query(question)
        hits = self.store.search(vector, k)
        return tuple(
            Passage(chunk=chunk, score=float(score), rank=i)
            for i, (chunk, score) in enumerate(hits, start=1)
        )

    def retrieve_many(self, questions: Sequence[str], k: int) -> list[tuple[Passage, ...]]:
        """Batch form of `retrieve` (one encoder call), for evaluation runs."""
        if not questions:
            return []
        vectors = self.embedder.embed_documents(list(questions))
        results = self.store.search_batch(vectors, k)
        return [
            tuple(
                Passage(chunk=chunk, score=float(score), rank=i)
                for i, (chunk, score) in enumerate(hits, start=1)
            )
            for hits in results
        ]
