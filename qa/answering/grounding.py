"""Check a generated answer against the passages it cites: markers -> verified Citations.

Builds on `citations` (sentence spans, quote location, lexical support) and adds what a
free-text LLM reply needs: marker variants (`[1, 2]`, `[1-3]`, `[Passage 1]`) normalised to
`[1][2]`, markers outside the passages shown dropped and logged, and an optional embedding
check for paraphrases.

A claim is supported by passage n when (1) every number and capitalised name in the claim
occurs in the passage (embeddings and word overlap both barely notice "Kunming" swapped for
"Huangpu", or 2019 for 2018), and (2) one sentence of n, or two adjacent ones, scores at least
SUPPORT_THRESHOLD. The score of a span is its lexical share (content words of the claim found in
it, `citations.support_score`); with an embedder it is max(lexical, mean(lexical, cosine)), so
a paraphrase needs both some shared words and a close meaning. An exact quote scores 1.

    >>> normalise_markers("In 2017 [1, 2] and 2018 [3-4] [Passage 5].")
    'In 2017 [1][2] and 2018 [3][4] [5].'
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qa.answering.citations import (
    MARKER,
    Span,
    citation_for,
    content_terms,
    locate,
    split_claims,
    split_sentences,
    support_score,
)
from qa.types import Citation, Document, Passage

if TYPE_CHECKING:
    from qa.embedding.models import Embedder

log = logging.getLogger(__name__)

SUPPORT_THRESHOLD = 0.6

_GROUP = re.compile(
    r"\[\s*(?:passages?|sources?|docs?|documents?)?\s*"
    r"(\d{1,3}(?:\s*(?:,|;|-|–|and)\s*\d{1,3})*)\s*\]",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NAME = re.compile(r"\b[A-Z][A-Za-z]+")  # "Huangpu's" -> "Huangpu"
_MAX_RANGE = 20


@dataclass(frozen=True)
class Grounded:
    """An answer text with its markers cleaned, its verified citations, and a warning if any."""

    text: str
    citations: tuple[Citation, ...]
    unsupported: tuple[str, ...]
    warning: str | None


def normalise_markers(text: str) -> str:
    """Rewrite every citation-marker variant as consecutive `[n]` markers."""

    def expand(m: re.Match[str]) -> str:
        ns: list[int] = []
        for part in re.split(r"\s*(?:,|;|and)\s*", m.group(1)):
            bounds = [int(x) for x in re.split(r"\s*[-–]\s*", part) if x]
            if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= _MAX_RANGE:
                ns.extend(range(bounds[0], bounds[1] + 1))
            else:
                ns.extend(bounds)
        return "".join(f"[{n}]" for n in ns)

    return _GROUP.sub(expand, text)


def drop_invalid_markers(text: str, valid: set[int]) -> tuple[str, list[int]]:
    """`text` without markers whose number is not in `valid`, and the numbers dropped."""
    dropped: list[int] = []

    def keep(m: re.Match[str]) -> str:
        if int(m.group(1)) in valid:
            return m.group(0)
        dropped.append(int(m.group(1)))
        return ""

    cleaned = MARKER.sub(keep, text)
    # Removing " [9]" must not leave "claim ." behind.
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned) if dropped else cleaned
    return cleaned, dropped


def key_terms_present(claim: str, passage_text: str) -> bool:
    """Whether every number and capitalised name of `claim` occurs in `passage_text`."""
    numbers = {n.replace(",", "") for n in _NUMBER.findall(passage_text)}
    if any(n.replace(",", "") not in numbers for n in _NUMBER.findall(claim)):
        return False
    words = set(content_terms(passage_text))
    # content_terms stems and drops stopwords, so "The" or "It" starting a sentence is no name.
    names = [term for w in _NAME.findall(claim) for term in content_terms(w)]
    return all(term in words for term in names)


def _candidates(text: str) -> list[Span]:
    sentences = split_sentences(text)
    pairs = [Span(text[a.start : b.end], a.start, b.end) for a, b in itertools.pairwise(sentences)]
    return [*sentences, *pairs]


class _Checker:
    """Scores the spans of a passage against a claim, embedding each passage's spans once."""

    def __init__(self, embedder: Embedder | None) -> None:
        self.embedder = embedder
        self._vectors: dict[str, Any] = {}

    def best(self, claim: str, passage: Passage) -> tuple[Span, bool]:
        """The best supporting span of the passage for `claim`, and whether it supports it."""
        text = passage.chunk.text
        exact = locate(claim, text)
        if exact is not None:
            return Span(text[exact[0] : exact[1]], *exact), True
        spans = _candidates(text)
        if not spans:
            return Span(text, 0, len(text)), False
        scores = [support_score(claim, s.text) for s in spans]
        if self.embedder is not None:
            cosines = self._cosines(claim, passage, spans)
            scores = [max(lex, (lex + cos) / 2) for lex, cos in zip(scores, cosines, strict=True)]
        # max() keeps the first of equal scores: single sentences come before pairs.
        i = max(range(len(spans)), key=scores.__getitem__)
        ok = scores[i] >= SUPPORT_THRESHOLD and key_terms_present(claim, text)
        return spans[i], ok

    def _cosines(self, claim: str, passage: Passage, spans: Sequence[Span]) -> list[float]:
        import numpy as np

        assert self.embedder is not None
        key = passage.chunk.id
        if key not in self._vectors:
            self._vectors[key] = self.embedder.embed_documents([s.text for s in spans])
        sims = np.asarray(self._vectors[key]) @ self.embedder.embed_query(claim)
        return [float(x) for x in sims]


def ground(
    text: str,
    shown: Sequence[Passage],
    *,
    embedder: Embedder | None = None,
    documents: Callable[[str], Document] | None = None,
) -> Grounded:
    """Verify every `[n]` of an LLM answer against the passages it was shown.

    `documents` (the store's lookup by id) gives each citation the page its quote lies on.
    """
    by_n = {p.rank: p for p in shown}
    cleaned, dropped = drop_invalid_markers(normalise_markers(text), set(by_n))
    if dropped:
        log.warning(
            "Dropped citation markers %s: the prompt showed passages %s only",
            sorted(set(dropped)),
            sorted(by_n),
        )
    checker = _Checker(embedder)
    citations: dict[tuple[int, int, int], Citation] = {}
    unsupported: list[str] = []
    for claim in split_claims(cleaned):
        claim_ok = False
        for n in claim.ns:
            passage = by_n[n]
            span, ok = checker.best(claim.text, passage)
            claim_ok = claim_ok or ok
            key = (n, span.start, span.end)
            if key not in citations or (ok and not citations[key].supported):
                document = documents(passage.chunk.doc_id) if documents else None
                citations[key] = citation_for(
                    passage, span.start, span.end, supported=ok, document=document
                )
        if claim.ns and not claim_ok:
            unsupported.append(claim.text)
    result = tuple(citations.values())
    return Grounded(cleaned, result, tuple(unsupported), _warning(result, unsupported))


def _warning(citations: Sequence[Citation], unsupported: Sequence[str]) -> str | None:
    if not citations:
        return "Unverified: the answer cites no passage, so none of it could be checked."
    if not any(c.supported for c in citations):
        return "Unverified: no claim of this answer is supported by the passages it cites."
    if unsupported:
        claims = "; ".join(f'"{c}"' for c in unsupported[:3])
        return f"Partly unverified: the cited passages do not support {claims}."
    return None
