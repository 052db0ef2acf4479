"""The feedback store (SQLite, WAL) and how its records become `qa eval` questions: retention,
replacement, each kind's question, the split by time that `qa calibrate --feedback` reports on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qa.errors import AnswerNotFoundError, FeedbackNotFoundError
from qa.evaluation.calibrate import split_questions
from qa.evaluation.feedback import export, stats
from qa.evaluation.questions import _parse
from qa.stores.feedback import SqliteFeedback, feedback_path
from qa.types import Answer, Citation, Evidence

CITED = Citation(
    1, "c1", "doc.txt", "doc", "The law starts on January 1, 2020.", 10, 44, None, True
)


def _answered(question: str) -> Answer:
    return Answer(
        question,
        "The law starts on January 1, 2020. [1]",
        "extractive",
        short_answer="January 1, 2020",
        citations=(CITED,),
    )


def _abstained(question: str) -> Answer:
    return Answer(question, "Not in the documents.", "extractive", abstained=True)


def test_store_file_is_wal_beside_the_index(tmp_path: Path) -> None:
    path = feedback_path(tmp_path / "index")
    assert path == tmp_path / "index.feedback.sqlite"
    store = SqliteFeedback(path)
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_record_rate_replace_delete(tmp_path: Path) -> None:
    store = SqliteFeedback(tmp_path / "f.sqlite")
    served = store.record(_answered("When?"), index_version="built x")
    assert (
        served.answer_id
        and served.answer_id != store.record(_answered("When?"), index_version="v").answer_id
    )
    first = store.rate(served.answer_id, rating="up")
    again = store.rate(
        served.answer_id, rating="down", kind="wrong_source", evidence=Evidence("d", 1, 3, "ab")
    )
    assert again.feedback_id == first.feedback_id and again.rating == "down"
    assert again.served.answer()["answer_id"] == served.answer_id
    assert store.query() == ((again,), 1)
    assert store.query(kind="should_abstain") == ((), 0)
    store.delete(again.feedback_id)
    with pytest.raises(FeedbackNotFoundError, match="No feedback with feedback_id"):
        store.delete(again.feedback_id)
    with pytest.raises(AnswerNotFoundError, match="older than served_answers_days"):
        store.rate("nope", rating="up")
    store.close()


def test_retention_drops_old_unrated_answers_only(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    store = SqliteFeedback(path, retention_days=1)
    old_rated = store.record(_answered("a"), index_version="v")
    old_unrated = store.record(_answered("b"), index_version="v")
    fresh = store.record(_answered("c"), index_version="v")
    store.rate(old_rated.answer_id, rating="up")
    with sqlite3.connect(path) as conn:  # two days ago
        conn.execute(
            "UPDATE served_answers SET served_at = '2000-01-01T00:00:00.000+00:00' "
            "WHERE answer_id IN (?, ?)",
            (old_rated.answer_id, old_unrated.answer_id),
        )
    assert store.prune() == 1
    store.served(old_rated.answer_id)
    store.served(fresh.answer_id)
    with pytest.raises(AnswerNotFoundError):
        store.served(old_unrated.answer_id)
    store.close()


def test_each_judgement_becomes_the_right_question(tmp_path: Path) -> None:
    store = SqliteFeedback(tmp_path / "f.sqlite")

    def rated(answer: Answer, **how: object) -> None:
        store.rate(store.record(answer, index_version="v").answer_id, **how)  # type: ignore[arg-type]

    rated(_answered("up"), rating="up")
    rated(_abstained("honest"), rating="up")
    rated(_answered("abstain"), rating="down", kind="should_abstain", correction="not there")
    rated(_abstained("answer"), rating="down", kind="should_answer")
    rated(_answered("fixed"), rating="down", kind="wrong_answer", correction="1 March 2021",
          evidence=Evidence("other.txt", 5, 17, "1 March 2021"))  # fmt: skip
    rated(_answered("vague"), rating="down", kind="wrong_answer")
    made = export(store.query()[0])
    by_q = {r["question"]: r for r in made.records}
    assert made.skipped == {"rated down (wrong_answer) without a correction or evidence": 1}
    assert by_q["up"] | {"id": "", "feedback": {}} == {
        "id": "", "question": "up", "answers": ["January 1, 2020"], "answerable": True,
        "evidence": [CITED.quote], "gold_ids": ["doc.txt"], "type": "feedback: helpful",
        "feedback": {},
    }  # fmt: skip
    assert (by_q["honest"]["answers"], by_q["honest"]["answerable"]) == ([], False)
    assert (by_q["abstain"]["answers"], by_q["abstain"]["answerable"]) == ([], False)
    assert (by_q["answer"]["answers"], by_q["answer"]["answerable"]) == ([], True)
    assert by_q["fixed"]["answers"] == ["1 March 2021"]
    assert (by_q["fixed"]["evidence"], by_q["fixed"]["gold_ids"]) == (
        ["1 March 2021"],
        ["other.txt"],
    )
    # Each record reads back as a question of the `qa eval` format, with where it came from.
    parsed = [_parse(r) for r in made.records]
    # Keyed by question: records rated within one millisecond have no order between them.
    assert {q.question: q.should_abstain for q in parsed} == {
        "up": False, "honest": True, "abstain": True, "answer": False, "fixed": False,
    }  # fmt: skip
    assert all(q.feedback is not None and q.feedback.created_at for q in parsed)
    counted = stats(store.query()[0])
    assert counted["total"] == 6 and counted["exportable"] == 5 and counted["unanswerable"] == 2
    assert sum(sum(day.values()) for day in counted["by_day"].values()) == 6
    store.close()


def test_split_by_time_holds_out_the_latest() -> None:
    def q(i: int, when: str | None) -> dict[str, object]:
        record: dict[str, object] = {"id": f"q{i}", "question": f"Q{i}?", "answers": []}
        if when:
            record["feedback"] = {"feedback_id": f"f{i}", "rating": "up", "created_at": when}
        return record

    fed = [_parse(q(i, f"2026-01-0{i}")) for i in (3, 1, 4, 2)]
    fit, held = split_questions(fed, 0.5)
    assert [x.id for x in fit] == ["q1", "q2"] and [x.id for x in held] == ["q3", "q4"]
    assert split_questions(fed, 0) == (fed, [])
    plain = [_parse(q(i, None)) for i in range(200)]
    fit, held = split_questions(plain, 0.5)
    assert 70 < len(held) < 130 and {x.id for x in fit}.isdisjoint(x.id for x in held)
    assert split_questions(plain, 0.5) == (fit, held)  # by a hash of the id: the same each run
