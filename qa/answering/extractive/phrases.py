"""Answer spans that no pattern types: noun-phrase stand-ins, "A or B?", "other than A".

Most SQuAD questions ask "what ...?" for a common noun phrase ("silver", "rounded", "a
storm"), which the date/number/name patterns of `spans` cannot produce. Without a
tagger, runs of content words that are not question words stand in for noun phrases; verbs
that introduce a preposition ("referred to") and adverbs ("closely") break a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qa.answering.citations import STOPWORDS, Span, content_terms, stem

_TOKEN = re.compile(r"[\w'’\-–]+|[^\w\s]")
PHRASE_PENALTY = 0.7  # an uncapitalised phrase answers less often than a name or number
_EITHER = re.compile(r"\b([\w-]+),? or ([\w-]+)\s*\??\s*$", re.I)
_ADVERB = re.compile(r"\w{3,}ly$|(?:however|therefore|thus|instead|often|usually|also)$")
_PREPOSITION = re.compile(r"\s+(?:to|as|on|by|in|with|for|from|into|at|that|upon)\b")


@dataclass(frozen=True)
class Candidate:
    """A short-answer span inside a sentence, with how well it fits the question."""

    text: str
    start: int
    end: int
    score: float


def either(question: str, sentence: str) -> Candidate | None:
    """For "Is it abstract or concrete?": the one option the sentence names."""
    m = _EITHER.search(question)
    if m is None:
        return None
    found = [
        (w.start(), w.group()) for opt in m.groups()
        if (w := re.search(rf"\b{re.escape(opt)}\b", sentence, re.I))
    ]  # fmt: skip
    if len(found) != 1:
        return None
    start, text = found[0]
    return Candidate(text, start, start + len(text), 1.0)


def other_than(question: str) -> set[str]:
    """The terms after "other than"/"besides"/"in addition to": the answer is their sibling."""
    m = re.search(r"\b(?:other than|besides|apart from|in addition to|aside from|outside of)"
                  r"\s+([^,?]+)", question, re.I)  # fmt: skip
    return set(content_terms(m.group(1))) if m else set()


def coordinated(sentence: str, span: Span, besides: set[str]) -> float:
    """1.0 when the span is listed with the "other than" terms ("surf and skateboard")."""
    if not besides:
        return 0.0
    link = r"\s*(?:,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+|\s+as well as\s+)"
    before = re.search(rf"([\w'’-]+(?:\s+[\w'’-]+)?){link}$", sentence[: span.start])
    after = re.match(rf"{link}([\w'’-]+(?:\s+[\w'’-]+)?)", sentence[span.end :])
    near = " ".join(m.group(1) for m in (before, after) if m)
    return 1.0 if besides & set(content_terms(near)) else 0.0


def phrases(sentence: str, q_terms: set[str], max_words: int = 5) -> list[Span]:
    """Runs of content words that are not question words: noun-phrase stand-ins for the
    answers no pattern types ("What were Isaac's chains made of?" -> "silver")."""
    out: list[Span] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run and len(run) <= max_words:
            start, end = run[0].start(), run[-1].end()
            out.append(Span(sentence[start:end], start, end))
        run.clear()

    for m in _TOKEN.finditer(sentence):
        tok = m.group()
        low = tok.lower()
        if not tok[0].isalnum() or low in STOPWORDS or stem(tok) in q_terms or _ADVERB.match(low):
            flush()
        elif low.endswith(("ed", "es")) and _PREPOSITION.match(sentence, m.end()):
            flush()  # "referred to", "focuses on": a verb, not part of a noun phrase
        else:
            run.append(m)
    flush()
    return out
