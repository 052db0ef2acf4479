"""The sentences the extractive answerer scores, and how it picks the ones it quotes.

A chunk boundary falls wherever the token budget ends, often inside a sentence; a quote must
still be a whole sentence of the document. `sentences_of` therefore splits the document text
around each chunk (when the answerer can look documents up) and keeps every sentence that
overlaps the chunk, whole. Spans are in document offsets: `document.text[start:end] == text`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.answering.citations import Span, content_terms, split_sentences
from qa.types import Chunk, Passage

NEAR_CHARS = 400  # how far after the best sentence a second one may start
# How far outside a chunk to look for the rest of a cut sentence (a line break ends it sooner).
REACH_CHARS = 2000
DocumentText = Callable[[Chunk], str | None]


@dataclass(frozen=True)
class Scored:
    """One sentence of one passage with its cues and total score."""

    passage: Passage
    span: Span  # offsets in the source document (the sentence may reach outside the chunk)
    sim: float
    lex: float
    cue: float
    score: float

    @property
    def doc_start(self) -> int:
        return self.span.start


def sent_terms_of(s: Scored) -> set[str]:
    return set(content_terms(s.span.text))


def sentences_of(
    passages: Sequence[Passage], document_text: DocumentText | None = None
) -> list[tuple[Passage, Span]]:
    """Whole sentences of all passages in rank order, in document offsets; a sentence seen in
    an earlier passage is skipped. `document_text(chunk)` gives the chunk's document text
    (None when unknown: the chunk's own sentences are used, cut where the chunk is cut)."""
    seen: set[tuple[str, int]] = set()
    out = []
    for p in sorted(passages, key=lambda p: p.rank):
        text = document_text(p.chunk) if document_text is not None else None
        for span in whole_sentences(p.chunk, text):
            key = (p.chunk.doc_id, span.start)
            if key not in seen and any(c.isalnum() for c in span.text):
                seen.add(key)
                out.append((p, span))
    return out


def whole_sentences(chunk: Chunk, document_text: str | None) -> list[Span]:
    """The sentences of the document that overlap the chunk, whole, in document offsets."""
    if document_text is None or document_text[chunk.start : chunk.end] != chunk.text:
        # No document (or another version of it): the chunk is all we can quote exactly.
        return [
            Span(s.text, chunk.start + s.start, chunk.start + s.end)
            for s in split_sentences(chunk.text)
        ]
    lo = max(0, chunk.start - REACH_CHARS)
    hi = min(len(document_text), chunk.end + REACH_CHARS)
    # Start and end the window at line breaks where there are some: they always end a
    # sentence, so the sentences found at the window's edges are whole.
    lo = max(lo, document_text.rfind("\n", lo, chunk.start) + 1)
    if (nl := document_text.find("\n", chunk.end, hi)) >= 0:
        hi = nl
    return [
        Span(s.text, lo + s.start, lo + s.end)
        for s in split_sentences(document_text[lo:hi])
        if lo + s.end > chunk.start and lo + s.start < chunk.end
    ]


def idf_of(q_terms: list[str], sent_terms: list[set[str]]) -> dict[str, float]:
    """IDF of each question term over the retrieved sentences (rarer here = more telling)."""
    n = len(sent_terms)
    return {t: math.log(1.0 + n / (1.0 + sum(t in s for s in sent_terms))) for t in q_terms}


def coverage(q_terms: list[str], idf: dict[str, float], terms: set[str]) -> float:
    total = sum(idf[t] for t in q_terms)
    return sum(idf[t] for t in q_terms if t in terms) / total if total else 0.0


def second_sentence(
    best: Scored, scored: list[Scored], q_terms: list[str], idf: dict[str, float]
) -> list[Scored]:
    """A second sentence when it scores close to the best and covers question words it misses."""
    have = sent_terms_of(best)
    base = coverage(q_terms, idf, have)
    if best.cue == 0.0:
        # The best match lacks the asked-for kind of span: a close runner-up that has one
        # completes it ("Which body issued the regulations that require ...?").
        for s in scored[1:4]:
            if s.cue == 1.0 and s.score >= best.score - 0.3 and s.doc_start != best.doc_start:
                return [s]
    for s in scored[1:4]:
        if s.score < best.score - 0.15 or s.doc_start == best.doc_start:
            continue
        gain = coverage(q_terms, idf, have | sent_terms_of(s)) - base
        if gain >= 0.2:
            return [s]
    # A two-part answer is usually told in one place: a sentence just after the best one
    # (same passage) may score lower yet supply the question's missing words.
    after = [
        s for s in scored[1:]
        if s.passage is best.passage and 0 < s.span.start - best.span.end <= NEAR_CHARS
        and s.score >= best.score - 0.5
    ]  # fmt: skip
    for s in sorted(after, key=lambda s: s.span.start):
        if coverage(q_terms, idf, have | sent_terms_of(s)) - base >= 0.2:
            return [s]
    return []


def window_vectors(vectors: np.ndarray, sentences: list[tuple[Passage, Span]]) -> np.ndarray:
    """Unit mean vector of each sentence with its neighbours in the same passage."""
    out = vectors.astype(np.float32, copy=True)
    for i, (p, _) in enumerate(sentences):
        for j in (i - 1, i + 1):
            if 0 <= j < len(sentences) and sentences[j][0] is p:
                out[i] += vectors[j]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def context_terms(
    s: Scored, sentences: list[tuple[Passage, Span]], sent_terms: list[set[str]]
) -> set[str]:
    """Terms of the sentence and its neighbours in the same passage."""
    out: set[str] = set()
    for i, (p, span) in enumerate(sentences):
        if p is s.passage and span == s.span:
            for j in range(max(0, i - 1), min(len(sentences), i + 2)):
                if sentences[j][0] is p:
                    out |= sent_terms[j]
    return out
