"""Question -> ranked Passages: dense + BM25 candidates, fusion, rescoring, de-duplication.

    question -> dense top-N (FAISS)  \\
                                      fuse (convex or RRF) -> rescore (dense feedback)
    question -> BM25 top-N (bm25/)   /        -> optional cross-encoder -> de-duplicate -> top k

Every candidate is scored by both retrievers: a BM25-only hit gets its exact cosine from the
stored vectors, so fusion never guesses a missing dense score. The rescoring step is pseudo-
relevance feedback with vectors already in the index (no extra model call): the question vector
is moved towards the best fused candidates and the dense scores recomputed. `Passage.score` stays
the chunk's cosine similarity with the question (what the answerers' abstention is calibrated
on); the rank is the fused order. `explain` returns every candidate with the reason it was kept
or dropped.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.retrieval import fusion
from qa.types import Candidate, Chunk, Passage

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.embedding.models import Embedder
    from qa.retrieval.rerank import Reranker
    from qa.stores.base import Store

# Dense feedback (tuned on SciFact train by bench/retrieval.py --tune): how far the question moves
# towards the mean of the top fused candidates, and how many of them.
FEEDBACK_WEIGHT = 0.3
FEEDBACK_DOCS = 3
# A candidate this similar to a kept passage, sharing this much of its span, or with this share
# of its word trigrams inside a kept passage (repeated boilerplate) is a duplicate.
DUPLICATE_COSINE = 0.98
DUPLICATE_OVERLAP = 0.5
DUPLICATE_CONTAINMENT = 0.8
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Retrieval:
    """The passages of one question plus every candidate considered (for `explain`)."""

    passages: tuple[Passage, ...]
    candidates: tuple[Candidate, ...]

    def to_dict(self, question: str, *, explain: bool = False) -> dict[str, Any]:
        """The `qa search --json` / GET /search body (`explain` adds every candidate)."""
        out: dict[str, Any] = {
            "question": question,
            "passages": [p.to_dict() for p in self.passages],
        }
        if explain:
            out["explain"] = [c.to_dict() for c in self.candidates]
        return out


class Retriever:
    """Hybrid retrieval over any Store, configured by the retrieval settings."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        settings: Settings,
        *,
        reranker: Reranker | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker

    def retrieve(self, question: str, k: int) -> tuple[Passage, ...]:
        """The k best passages, best first (score = cosine similarity with the question)."""
        return self.explain(question, k).passages

    def explain(self, question: str, k: int) -> Retrieval:
        """`retrieve` plus every candidate with its per-stage scores and fate."""
        return self._run(question, self.embedder.embed_query(question), k)

    def retrieve_many(self, questions: Sequence[str], k: int) -> list[tuple[Passage, ...]]:
        """`retrieve` for many questions with one encoder call, for evaluation runs."""
        if not questions:
            return []
        return self.retrieve_with_vectors(questions, self.embedder.embed_documents(questions), k)

    def retrieve_with_vectors(
        self, questions: Sequence[str], vectors: np.ndarray, k: int
    ) -> list[tuple[Passage, ...]]:
        """`retrieve` with question vectors computed already (benchmarks reuse them)."""
        return [self._run(q, v, k).passages for q, v in zip(questions, vectors, strict=True)]

    # -- stages ------------------------------------------------------------------------------

    def _run(self, question: str, qvec: np.ndarray, k: int) -> Retrieval:
        s = self.settings
        n = max(s.candidates, k)
        qvec = np.asarray(qvec, dtype=np.float32).reshape(-1)
        dense_hits = self.store.search(qvec, n) if s.retrieval != "bm25" else []
        bm25_hits = self.store.keyword_search(question, n) if s.retrieval != "dense" else []
        chunks = {c.id: c for c, _ in [*dense_hits, *bm25_hits]}
        if not chunks:
            return Retrieval((), ())
        ids = list(chunks)
        vectors = self.store.chunk_vectors(ids)
        cosine = dict(zip(ids, (vectors @ qvec).tolist(), strict=True))
        dense_rank = {c.id: i for i, (c, _) in enumerate(dense_hits, start=1)}
        bm25 = {c.id: score for c, score in bm25_hits}
        bm25_rank = {c.id: i for i, (c, _) in enumerate(bm25_hits, start=1)}

        fused = self._fuse(cosine, bm25)
        if s.rescore and s.retrieval == "hybrid":
            fused = self._feedback(ids, vectors, qvec, fused, bm25)
        order = sorted(ids, key=lambda i: -fused[i])
        rerank: dict[str, float] = {}
        if self.reranker is not None:
            head = order[: s.rerank_candidates]
            scores = self.reranker.score(question, [chunks[i].text for i in head])
            rerank = dict(zip(head, scores, strict=True))
            order = sorted(head, key=lambda i: -rerank[i]) + order[len(head) :]

        status = self._select(order, chunks, ids, vectors, k)
        kept = [i for i in order if status[i] == "kept"]
        final_rank = {cid: r for r, cid in enumerate(kept, start=1)}
        passages = tuple(
            Passage(chunk=chunks[cid], score=cosine[cid], rank=r) for cid, r in final_rank.items()
        )
        candidates = tuple(
            Candidate(
                chunk=chunks[cid],
                dense_rank=dense_rank.get(cid),
                dense_score=cosine[cid],
                bm25_rank=bm25_rank.get(cid),
                bm25_score=bm25.get(cid),
                fused_score=fused[cid],
                rerank_score=rerank.get(cid),
                rank=final_rank.get(cid),
                status=status[cid],
            )
            for cid in order
        )
        return Retrieval(passages, candidates)

    def _fuse(self, cosine: dict[str, float], bm25: dict[str, float]) -> dict[str, float]:
        s = self.settings
        if s.retrieval == "dense":
            return dict(cosine)
        if s.retrieval == "bm25":
            return {cid: bm25.get(cid, 0.0) for cid in cosine}
        if s.fusion == "rrf":
            return fusion.rrf([cosine, bm25], k=s.rrf_k)
        return fusion.convex(cosine, bm25, s.fusion_weight)

    def _feedback(
        self,
        ids: list[str],
        vectors: np.ndarray,
        qvec: np.ndarray,
        fused: dict[str, float],
        bm25: dict[str, float],
    ) -> dict[str, float]:
        """Fuse again with dense scores from the question moved towards the top candidates."""
        top = sorted(range(len(ids)), key=lambda i: -fused[ids[i]])[:FEEDBACK_DOCS]
        moved = qvec + FEEDBACK_WEIGHT * vectors[top].mean(axis=0)
        moved /= max(float(np.linalg.norm(moved)), 1e-12)
        cosine = dict(zip(ids, (vectors @ moved).tolist(), strict=True))
        return self._fuse(cosine, bm25)

    def _select(
        self,
        order: list[str],
        chunks: dict[str, Chunk],
        ids: list[str],
        vectors: np.ndarray,
        k: int,
    ) -> dict[str, str]:
        """Keep the first k distinct passages in order; say why each other one was left out."""
        row = {cid: i for i, cid in enumerate(ids)}
        dedupe = self.settings.dedupe
        status: dict[str, str] = {}
        kept: list[str] = []
        by_text: dict[str, str] = {}
        by_doc: dict[str, list[Chunk]] = {}
        words = _Shingles()
        for cid in order:
            if len(kept) >= k:
                status[cid] = f"not in the top {k}"
                continue
            chunk = chunks[cid]
            twin = None
            if dedupe:
                twin = by_text.get(chunk.text) or _overlapping(chunk, by_doc.get(chunk.doc_id, ()))
                if twin is None and kept:
                    # Only against the few kept so far: the loop stops at k kept passages.
                    sims = vectors[[row[o] for o in kept]] @ vectors[row[cid]]
                    best = int(np.argmax(sims))
                    if sims[best] >= DUPLICATE_COSINE:
                        twin = kept[best]
                twin = twin or words.container(cid, chunk.text)
            if twin is not None:
                status[cid] = f"dropped: duplicate of {twin}"
                continue
            status[cid] = "kept"
            kept.append(cid)
            words.add(cid, chunk.text)
            by_text.setdefault(chunk.text, cid)
            by_doc.setdefault(chunk.doc_id, []).append(chunk)
        return status


class _Shingles:
    """Word trigrams of the kept passages (at most k of them), each checked by set intersection."""

    def __init__(self) -> None:
        self.kept: dict[str, frozenset[tuple[str, ...]]] = {}

    def add(self, cid: str, text: str) -> None:
        self.kept[cid] = _trigrams(text)

    def container(self, cid: str, text: str) -> str | None:
        """A kept passage sharing most trigrams with this text (of the smaller of the two)."""
        mine = _trigrams(text)
        for owner, grams in self.kept.items():
            if len(mine & grams) >= DUPLICATE_CONTAINMENT * max(1, min(len(mine), len(grams))):
                return owner
        return None


@functools.lru_cache(maxsize=1 << 9)  # the same chunks come back question after question
def _trigrams(text: str) -> frozenset[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return frozenset(zip(words, words[1:], words[2:], strict=False))


def _overlapping(chunk: Chunk, same_doc: Sequence[Chunk]) -> str | None:
    """A kept chunk of the same document sharing over half of this chunk's span."""
    for other in same_doc:
        overlap = min(other.end, chunk.end) - max(other.start, chunk.start)
        if overlap > DUPLICATE_OVERLAP * max(1, chunk.end - chunk.start):
            return other.id
    return None
