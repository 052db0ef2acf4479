"""Readers' feedback as a `qa eval` question set: `qa feedback export` and `qa feedback stats`.

    qa feedback export OUT.jsonl [--index DIR]     the question set (one line per usable record)
    qa feedback stats [--index DIR]                counts by rating and kind, and per day

How a record becomes a question (the question asked is the standalone one, so a follow-up needs
no conversation):

    rated down, should_abstain          unanswerable ("answers": [], "answerable": false)
    rated up, the answer abstained      unanswerable: "not in the documents" was right
    rated up, an answer                 answerable: the correction, else the short answer, else
                                        the answer text; the reader's evidence, else the quotes
                                        it cited (with their documents as gold_ids)
    rated down with a correction or     answerable: the correction as the answer, the evidence
    evidence (any other kind)           and its document as the labels
    rated down, should_answer, nothing  answerable without a gold answer (labels abstention only)
    anything else                       skipped, and counted: "wrong" alone says not what is right

Each line keeps `"feedback": {"feedback_id", "answer_id", "rating", "kind", "created_at", ...}`:
`qa eval` reports those questions in a section of their own and `qa calibrate` splits them by
time to report its held-out effect.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.evaluation.questions import EvalSet
    from qa.types import Feedback

_MARKER = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


@dataclass(frozen=True)
class Export:
    """The question records made from feedback, and why the others were skipped."""

    records: tuple[dict[str, Any], ...]
    skipped: dict[str, int]


def to_question(fb: Feedback) -> dict[str, Any] | str:
    """The `qa eval` record of one feedback record, or why it cannot be one."""
    answer = fb.served.answer()
    evidence = [fb.evidence.text] if fb.evidence else []
    gold = [fb.evidence.doc_id] if fb.evidence else []
    unanswerable = (fb.rating == "down" and fb.kind == "should_abstain") or (
        fb.rating == "up" and answer.get("abstained")
    )
    if unanswerable:
        labels: dict[str, Any] = {"answers": [], "answerable": False}
    elif fb.rating == "up":
        said = answer.get("short_answer") or _MARKER.sub("", answer.get("answer", "")).strip()
        cited = [c for c in answer.get("citations", []) if c.get("supported")] or answer.get(
            "citations", []
        )
        labels = {
            "answers": [fb.correction or said],
            "answerable": True,
            "evidence": evidence or list(dict.fromkeys(c["quote"] for c in cited)),
            "gold_ids": gold or list(dict.fromkeys(c["doc_id"] for c in cited)),
        }
    elif fb.correction or fb.evidence:
        labels = {
            "answers": [fb.correction] if fb.correction else [],
            "answerable": True,
            "evidence": evidence,
            "gold_ids": gold,
        }
    elif fb.kind == "should_answer":
        labels = {"answers": [], "answerable": True}
    else:
        return f"rated down ({fb.kind or 'no kind'}) without a correction or evidence"
    return {
        "id": f"feedback-{fb.feedback_id}",
        "question": fb.served.standalone_question or fb.served.question,
        **labels,
        "type": f"feedback: {fb.kind or ('helpful' if fb.rating == 'up' else 'not helpful')}",
        "feedback": {
            "feedback_id": fb.feedback_id,
            "answer_id": fb.served.answer_id,
            "rating": fb.rating,
            "kind": fb.kind,
            "created_at": fb.created_at,
            "asked": fb.served.question,
            "correction": fb.correction,
            "index_version": fb.served.index_version,
            "served_at": fb.served.served_at,
        },
    }


def export(feedback: Sequence[Feedback]) -> Export:
    """The question set of `feedback` (oldest first), and the skipped records by reason."""
    records, skipped = [], Counter[str]()
    for fb in feedback:
        made = to_question(fb)
        if isinstance(made, str):
            skipped[made] += 1
        else:
            records.append(made)
    return Export(tuple(records), dict(skipped))


def load_feedback(settings: Settings) -> tuple[Feedback, ...]:
    """Every feedback record of the index the settings name, oldest first (none when nothing
    was ever recorded there: reading creates no file)."""
    from qa.stores import open_feedback
    from qa.stores.feedback import feedback_path

    if settings.store == "faiss" and not feedback_path(settings.index_dir).is_file():
        return ()
    store = open_feedback(settings)
    try:
        return store.query()[0]
    finally:
        store.close()


def feedback_evalset(settings: Settings) -> EvalSet:
    """The feedback of the settings' index as a question set (EvalSetError when none is usable)."""
    from qa.evaluation.questions import EvalSet, EvalSetError, _parse

    made = export(load_feedback(settings))
    if not made.records:
        why = "; ".join(f"{n} {reason}" for reason, n in made.skipped.items()) or "none recorded"
        raise EvalSetError(
            f"No usable feedback beside the index {settings.index_dir} ({why}). Rate answers "
            "in the chat page or with POST /feedback first."
        )
    path = Path(f"feedback of {settings.index_dir}")
    return EvalSet(path, tuple(_parse(r) for r in made.records), ())


def write_export(settings: Settings, out: Path) -> Export:
    """Write the question set of the settings' index feedback to `out` (JSONL)."""
    made = export(load_feedback(settings))
    lines = [json.dumps(r, ensure_ascii=False) for r in made.records]
    out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return made


def stats(feedback: Sequence[Feedback]) -> dict[str, Any]:
    """Counts by rating and kind, per day, and how many make questions."""
    made = export(feedback)
    days: dict[str, Counter[str]] = {}
    for fb in feedback:
        label = fb.kind or ("helpful" if fb.rating == "up" else "not helpful")
        days.setdefault(fb.created_at[:10], Counter())[label] += 1
    return {
        "total": len(feedback),
        "ratings": dict(Counter(fb.rating for fb in feedback)),
        "kinds": dict(Counter(fb.kind or "none" for fb in feedback)),
        "with_correction": sum(fb.correction is not None for fb in feedback),
        "with_evidence": sum(fb.evidence is not None for fb in feedback),
        "exportable": len(made.records),
        "unanswerable": sum(not r["answerable"] for r in made.records),
        "skipped": made.skipped,
        "by_day": {day: dict(c) for day, c in sorted(days.items())},
    }
