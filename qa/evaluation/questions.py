"""Evaluation question sets: read the JSONL format and judge which passages are relevant.

One question per line: `{"id", "question", "answers": [...], "gold_ids"?, "evidence"?,
"answerable"?, "history"?, "type"?, "feedback"?}`; other fields are ignored. `feedback` marks a
question made from a reader's feedback (`qa feedback export`): `{"feedback_id", "rating",
"kind", "created_at"}`. An `evidence` item is a string,
or an object with a `text` string or a `sentences` list of strings (as other public sets ship
it; the sentences are joined into one item). A malformed line is reported (with its line
number) and skipped; a missing or empty file is an EvalSetError.

Relevance comes from `gold_ids` when given (document level, as in BEIR qrels: a chunk counts for
its document), else from `evidence` (a passage is relevant when it contains an evidence string or
overlaps most of it, so the labels survive re-chunking).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.answering.citations import split_sentences
from qa.errors import QAError
from qa.types import Passage, Turn

# A passage "overlaps most of" an evidence string when it shares a run this long with it.
EVIDENCE_OVERLAP = 0.6


class EvalSetError(QAError):
    """The question set file is missing, empty, or holds no valid question."""


@dataclass(frozen=True)
class FeedbackOrigin:
    """Where a question made from feedback came from: the record, its rating and kind, when."""

    feedback_id: str
    rating: str
    kind: str | None
    created_at: str


@dataclass(frozen=True)
class EvalQuestion:
    """One question of an evaluation set, with its gold labels."""

    id: str
    question: str
    answers: tuple[str, ...] = ()
    gold_ids: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    answerable: bool | None = None
    history: tuple[Turn, ...] = ()
    type: str | None = None
    feedback: FeedbackOrigin | None = None

    @property
    def should_abstain(self) -> bool:
        """True when the right behaviour is to abstain (no answers, or answerable: false)."""
        return self.answerable is False or (self.answerable is None and not self.answers)

    @property
    def has_relevance(self) -> bool:
        """True when retrieval can be judged for this question."""
        return bool(self.gold_ids or self.evidence)


@dataclass(frozen=True)
class BadLine:
    """A line of the question set that was skipped, and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class EvalSet:
    """The valid questions of a file, in file order, and the lines skipped."""

    path: Path
    questions: tuple[EvalQuestion, ...]
    skipped: tuple[BadLine, ...]


def load_questions(path: Path) -> EvalSet:
    """Read a JSONL question set; malformed lines are skipped and listed in `skipped`."""
    path = Path(path)
    if not path.is_file():
        raise EvalSetError(
            f"Question set {path} does not exist. Give a .jsonl file with one question per "
            "line, or a folder holding corpus.jsonl and questions.jsonl."
        )
    questions: list[EvalQuestion] = []
    skipped: list[BadLine] = []
    seen: set[str] = set()
    text = path.read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            question = _parse(json.loads(line))
            if question.id in seen:
                raise ValueError(f"duplicate id {question.id!r}")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            skipped.append(BadLine(lineno, str(exc)))
            continue
        seen.add(question.id)
        questions.append(question)
    if not questions:
        detail = "; ".join(f"line {b.line}: {b.reason}" for b in skipped[:5])
        raise EvalSetError(
            f"Question set {path} holds no valid question"
            + (f" ({detail})" if detail else " (the file is empty)")
            + '. Each line must be a JSON object like {"id": "q1", "question": "...", '
            '"answers": ["..."]}.'
        )
    return EvalSet(path, tuple(questions), tuple(skipped))


def _strings(record: dict[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'"{key}" must be a list of strings')
    return tuple(value)


def _evidence(value: Any) -> tuple[str, ...]:
    """Evidence items as strings: a string, or an object with `text` or `sentences`."""
    if not isinstance(value, list):
        raise ValueError('"evidence" must be a list')
    out = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            item = item["text"]
        elif isinstance(item, dict) and isinstance(sentences := item.get("sentences"), list):
            if not all(isinstance(s, str) for s in sentences):
                raise ValueError('"evidence" sentences must be strings')
            item = " ".join(s.strip() for s in sentences)
        if not isinstance(item, str):
            raise ValueError(
                '"evidence" items must be strings or objects with a "text" string or a '
                '"sentences" list of strings'
            )
        out.append(item)
    return tuple(out)


def _history(value: Any) -> tuple[Turn, ...]:
    if not isinstance(value, list):
        raise ValueError('"history" must be a list')
    turns = []
    for item in value:
        if isinstance(item, str):
            turns.append(Turn("user", item))
        elif (
            isinstance(item, dict)
            and item.get("role") in ("user", "assistant")
            and isinstance(item.get("content"), str)
        ):
            turns.append(Turn(item["role"], item["content"]))
        else:
            raise ValueError(
                '"history" items must be strings or {"role": "user"|"assistant", "content": str}'
            )
    return tuple(turns)


def _parse(record: Any) -> EvalQuestion:
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    qid, question = record.get("id"), record.get("question")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise ValueError('"id" must be a non-empty string or integer')
    if not isinstance(question, str) or not question.strip():
        raise ValueError('"question" must be a non-empty string')
    if "answers" not in record:
        raise ValueError('"answers" is missing (use [] for a question that should be abstained)')
    answerable = record.get("answerable")
    if answerable is not None and not isinstance(answerable, bool):
        raise ValueError('"answerable" must be true or false')
    kind = record.get("type")
    if kind is not None and not isinstance(kind, str):
        raise ValueError('"type" must be a string')
    return EvalQuestion(
        id=str(qid),
        question=question.strip(),
        answers=_strings(record, "answers"),
        gold_ids=tuple(str(g) for g in _ids(record)),
        evidence=tuple(e for e in _evidence(record.get("evidence", [])) if e.strip()),
        answerable=answerable,
        history=_history(record.get("history", [])),
        type=kind,
        feedback=_origin(record.get("feedback")),
    )


def _origin(value: Any) -> FeedbackOrigin | None:
    if value is None:
        return None
    fields = ("feedback_id", "rating", "created_at")
    if not isinstance(value, dict) or not all(isinstance(value.get(f), str) for f in fields):
        raise ValueError(
            '"feedback" must be an object with "feedback_id", "rating" and "created_at" strings'
        )
    kind = value.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise ValueError('"feedback.kind" must be a string or null')
    return FeedbackOrigin(value["feedback_id"], value["rating"], kind, value["created_at"])


def _ids(record: dict[str, Any]) -> list[str | int]:
    value = record.get("gold_ids", [])
    if not isinstance(value, list) or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        raise ValueError('"gold_ids" must be a list of document ids')
    return value


# -- relevance --------------------------------------------------------------------------------


def _squash(text: str) -> str:
    return " ".join(text.lower().split())


def evidence_covered(evidence: Sequence[str], text: str) -> frozenset[int]:
    """Indexes of the evidence strings that `text` contains or overlaps for the most part."""
    haystack = _squash(text)
    covered = set()
    for i, ev in enumerate(evidence):
        needle = _squash(ev)
        if needle in haystack:
            covered.add(i)
            continue
        # The evidence may straddle a chunk boundary: a long enough shared run still counts.
        matcher = difflib.SequenceMatcher(None, needle, haystack, autojunk=False)
        match = matcher.find_longest_match(0, len(needle), 0, len(haystack))
        if match.size >= EVIDENCE_OVERLAP * len(needle):
            covered.add(i)
    return frozenset(covered)


def quotes_evidence(quotes: Sequence[str], evidence: Sequence[str]) -> bool:
    """Whether a quote holds a whole gold sentence, or most of one (our sentence splitter also
    cuts at ';', so a quote can be the larger part of a gold sentence)."""
    gold = [_squash(s.text) for e in evidence for s in split_sentences(e)]
    for quote in map(_squash, quotes):
        if any(g in quote or (quote in g and 2 * len(quote) >= len(g)) for g in gold):
            return True
    return False


def passage_relevant(question: EvalQuestion, passage: Passage) -> bool | None:
    """Whether a passage is relevant to the question; None when the question has no labels."""
    if question.gold_ids:
        return passage.chunk.doc_id in question.gold_ids
    if question.evidence:
        return bool(evidence_covered(question.evidence, passage.chunk.text))
    return None


@dataclass(frozen=True)
class Ranking:
    """A retrieval result reduced to relevance keys, ready for the ranking metrics.

    Document level (gold_ids): `keys` are document ids in best-chunk order, without repeats;
    `relevant` and `targets` are the gold ids.
    Evidence level: `keys` has one entry per passage: the first evidence string it newly covers,
    or a unique non-relevant key. `relevant` holds the keys of the passages that cover something
    new plus one key per evidence string not retrieved at all, so one chunk holding two evidence
    strings counts as one relevant unit (ideal DCG) and a split one as two. `targets` are the
    evidence strings themselves, and `covers` what each position newly covers (for recall).
    """

    keys: tuple[str, ...]
    covers: tuple[frozenset[str], ...]
    relevant: frozenset[str]
    targets: frozenset[str]


def rank_keys(question: EvalQuestion, passages: Sequence[Passage]) -> Ranking | None:
    """The relevance keys of a ranked passage list, or None when the question has no labels."""
    if question.gold_ids:
        docs = tuple(dict.fromkeys(p.chunk.doc_id for p in passages))
        gold = frozenset(question.gold_ids)
        return Ranking(docs, tuple(frozenset({d}) for d in docs), gold, gold)
    if not question.evidence:
        return None
    keys: list[str] = []
    covers: list[frozenset[str]] = []
    seen: set[str] = set()
    for passage in passages:
        new = {
            f"evidence:{i}"
            for i in evidence_covered(question.evidence, passage.chunk.text)
            if f"evidence:{i}" not in seen
        }
        seen |= new
        covers.append(frozenset(new))
        keys.append(min(new) if new else f"passage:{passage.rank}")
    targets = frozenset(f"evidence:{i}" for i in range(len(question.evidence)))
    units = {min(c) for c in covers if c} | (targets - seen)
    return Ranking(tuple(keys), tuple(covers), frozenset(units), targets)
