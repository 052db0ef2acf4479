"""Rewrite a follow-up question into a standalone one, without an LLM.

A question depends on the conversation when it leans on a pronoun ("Who ruled it?"), opens
with "and"/"what about", says "the same ...", or is too short to search on. Then the key terms
of the latest earlier user turn are carried over: a lone pronoun is replaced by that turn's main
named entity, "What about X?" swaps X into the earlier question, and anything else gets the
earlier turn's key words appended in brackets. A question that stands alone comes back as is.

    >>> from qa.types import Turn
    >>> rewrite_followup("Who ruled it in the 10th century?", [Turn("user", "Where is Normandy?")])
    'Who ruled Normandy in the 10th century?'
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.answering.citations import STOPWORDS
from qa.types import Turn

_PRONOUN = re.compile(r"\b(it|its|they|them|their|he|him|his|she|her|this|these|those)\b", re.I)
_POSSESSIVE = {"its", "their", "his", "her"}
_THING = {"it", "its", "they", "them", "their"}
_DEPENDENT_START = re.compile(r"^\s*(?:and|but|also|so|then)\b[\s,]*", re.I)
_WHAT_ABOUT = re.compile(r"^\s*(?:and\s+)?(?:what|how)\s+about\s+(.+?)\s*\??\s*$", re.I)
_SAME = re.compile(
    r"\b(?:the|that) (?:same|former|latter)\b|\bthe (?:first|second|other) one\b", re.I
)
_WH = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "many", "much"}
_ORDINALS = {"first", "second", "third", "fourth", "fifth", "last", "next", "previous"}
# A capitalised phrase that is not just the question's first word.
_ENTITY = re.compile(
    r"(?<!^)(?<![.?!] )\b[A-Z][\w'’\-]*(?:\s+(?:(?:of|the|and|for|on|de)\s+)*[A-Z][\w'’\-]*)*"
)


def rewrite_followup(question: str, history: Sequence[Turn]) -> str:
    """The question made standalone using the latest earlier user turn (unchanged if it stands)."""
    users = [i for i, t in enumerate(history) if t.role == "user" and t.content.strip()]
    if not users or not _depends(question):
        return question
    # The earlier turn may itself be a follow-up ("When did it issue them?"): resolve it first.
    last = users[-1]
    previous = rewrite_followup(history[last].content.strip(), history[:last])
    about = _WHAT_ABOUT.match(question)
    entities = _entities(previous)
    entity = max(entities, key=len) if entities else None
    if about:
        subject = about.group(1)
        if entity and entity in previous:
            return previous.replace(entity, subject, 1)
        return f"{previous.rstrip('?. ')} ({subject})?"
    pronouns = _PRONOUN.findall(question)
    # Only a lone "it"/"they" with one candidate is safe to resolve; "he" is usually the
    # previous answer, which the question does not name, so key words are carried instead.
    if (
        len(entities) == 1
        and len(_key_terms(previous.replace(entities[0], " "), "")) <= 1
        and len(pronouns) == 1
        and pronouns[0].lower() in _THING
        and not _SAME.search(question)
    ):
        word = pronouns[0]
        replacement = entities[0] + ("'s" if word.lower() in _POSSESSIVE else "")
        return _PRONOUN.sub(replacement, question, count=1)
    terms = _key_terms(previous, question)
    if not terms:
        return question
    body = _DEPENDENT_START.sub("", question).strip()
    body = body[:1].upper() + body[1:]
    return f"{body.rstrip('?. ')} ({' '.join(terms)})?"


def _depends(question: str) -> bool:
    words = re.findall(r"[\w'’]+", question)
    content = [w for w in words if w.lower() not in STOPWORDS and w.lower() not in _WH]
    return bool(
        _PRONOUN.search(question)
        or _DEPENDENT_START.match(question)
        or _WHAT_ABOUT.match(question)
        or _SAME.search(question)
        or len(content) < 2
    )


def _entities(text: str) -> list[str]:
    """Capitalised phrases of the earlier question (not its first word), distinct."""
    found = [m.group() for m in _ENTITY.finditer(text)]
    return list(dict.fromkeys(f for f in found if f.lower() not in STOPWORDS))


def _key_terms(previous: str, question: str) -> list[str]:
    """Content words of the earlier question that the new one lacks (surface forms, in order)."""
    have = {w.lower() for w in re.findall(r"[\w'’]+", question)}
    own_ordinal = bool(have & _ORDINALS)
    terms: list[str] = []
    seen: set[str] = set()
    for w in re.findall(r"[\w'’\-]+", previous):
        low = w.lower()
        if low in STOPWORDS or low in _WH or low in have or low in seen:
            continue
        if own_ordinal and low in _ORDINALS:
            continue  # "the second one" replaces "the first batch", it does not add to it
        seen.add(low)
        terms.append(w)
    return terms
