"""`qa eval` and the kinds of answer: answered, closest and abstained, in the report dict, the
terminal table, the HTML report and the gates."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from qa.errors import ConfigError
from qa.evaluation.gates import check_gates, lookup
from qa.evaluation.questions import EvalQuestion
from qa.evaluation.report import _change, print_runs, render_html
from qa.evaluation.scoring import Outcome, Run, evaluate
from qa.types import Answer, AnswerKind, Chunk, Passage

PASSAGE = Passage(Chunk("a#1", "a", "A", "Normandy is in France.", 0, 22, 5), 0.5, 1)


def _outcome(
    qid: str, *, answerable: bool, kind: AnswerKind, confidence: float | None = None
) -> Outcome:
    q = EvalQuestion(
        qid,
        f"Question {qid}?",
        answers=("France",) if answerable else (),
        gold_ids=("a",),
        type="answerable" if answerable else "unanswerable",
    )
    text = {"answered": "France [1]", "closest": "Closest: Normandy [1]", "abstained": "No."}
    answer = Answer(
        question=q.question,
        answer=text[kind],
        answerer="test",
        abstained=kind == "abstained",
        kind=kind,
        confidence=confidence,
        passages=(PASSAGE,),
        timings_ms=(("total", 10.0),),
    )
    return Outcome(q, (PASSAGE,), answer)


# 4 answerable questions: answered twice, closest once, abstained once; 2 unanswerable:
# closest once, abstained once. Confidence on the four that are not abstentions.
OUTCOMES = [
    _outcome("a1", answerable=True, kind="answered", confidence=0.9),
    _outcome("a2", answerable=True, kind="answered", confidence=0.8),
    _outcome("a3", answerable=True, kind="closest", confidence=0.4),
    _outcome("a4", answerable=True, kind="abstained"),
    _outcome("u1", answerable=False, kind="closest", confidence=0.2),
    _outcome("u2", answerable=False, kind="abstained"),
]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return evaluate(OUTCOMES, k=5)


def test_kinds_shares_counts_and_mean_confidence(report: dict[str, Any]) -> None:
    assert report["kinds"] == {
        "answered": pytest.approx(2 / 6), "closest": pytest.approx(2 / 6),
        "abstained": pytest.approx(2 / 6),
        "answerable_answered": 0.5, "answerable_closest": 0.25, "answerable_abstained": 0.25,
        "unanswerable_answered": 0.0, "unanswerable_closest": 0.5, "unanswerable_abstained": 0.5,
        "mean_confidence": pytest.approx(0.575),  # (0.9 + 0.8 + 0.4 + 0.2) / 4
        "counts": {
            "answered": 2, "closest": 2, "abstained": 2,
            "answerable_answered": 2, "answerable_closest": 1, "answerable_abstained": 1,
            "unanswerable_answered": 0, "unanswerable_closest": 1, "unanswerable_abstained": 1,
        },
        "n": 6,
    }  # fmt: skip


def test_only_abstained_counts_as_abstaining(report: dict[str, Any]) -> None:
    # u1 was given a closest passage: a missed abstention, not an abstention.
    assert report["abstention"] == {
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "false_abstention_rate": 0.25,
    }  # fmt: skip
    failures = {f["id"]: f for f in report["failures"]}
    assert failures["u1"]["reasons"] == ["missed abstention"]
    assert (failures["u1"]["kind"], failures["u1"]["confidence"]) == ("closest", 0.2)
    assert (failures["a4"]["kind"], failures["a4"]["confidence"]) == ("abstained", None)


def test_kinds_by_type(report: dict[str, Any]) -> None:
    by_type = report["by_type"]
    unanswerable = by_type["unanswerable"]["kinds"]
    assert (unanswerable["closest"], unanswerable["unanswerable_closest"]) == (0.5, 0.5)
    assert unanswerable["answerable_closest"] is None  # no answerable question of that type
    assert by_type["answerable"]["kinds"]["counts"]["closest"] == 1


def test_retrieval_only_kinds_are_not_measured() -> None:
    q = EvalQuestion("r", "Where?", gold_ids=("a",))
    kinds = evaluate([Outcome(q, (PASSAGE,))], k=5)["kinds"]
    assert kinds["n"] == 0 and kinds["mean_confidence"] is None
    assert set(kinds["counts"].values()) == {None} and kinds["unanswerable_answered"] is None


def test_kinds_are_gates(report: dict[str, Any]) -> None:
    assert lookup(report, "kinds.unanswerable_closest") == 0.5
    assert lookup(report, "kinds.counts.answerable_closest") == 1
    runs = [Run("base", {}, report, (10.0,) * 6)]
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert check_gates(runs, [("kinds.unanswerable_answered", 0.0, "max")], console=console)
    assert not check_gates(runs, [("kinds.unanswerable_closest", 0.25, "max")], console=console)
    assert "gate kinds.unanswerable_closest: 0.5000 <= 0.25 FAIL" in out.getvalue()
    with pytest.raises(
        ConfigError, match=r"Unknown metric 'kinds.nope'\. Metrics: .*kinds\.closest"
    ):
        lookup(report, "kinds.nope")


def test_terminal_table_and_html_show_the_kinds(report: dict[str, Any]) -> None:
    runs = [Run("base", {}, report, (10.0,) * 6)]
    out = io.StringIO()
    print_runs(Console(file=out, width=200), runs, k=5)
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.getvalue().splitlines()
        if line.count("│") >= 3
    }
    assert rows["kinds.answerable_closest"] == "0.250"
    assert rows["kinds.unanswerable_answered"] == "0.000"
    assert rows["kinds.mean_confidence"] == "0.575"
    assert rows["kinds.counts.closest"] == "2"
    assert "closest" in out.getvalue().split("by type")[1]  # the per-type column

    page = render_html(runs, source="set.jsonl", k=5)
    assert "<td>kinds.unanswerable_closest</td>" in page
    assert "answer (closest,\n20% confident):" in page
    assert "answer (abstained):" in page


def test_deltas_of_kinds_are_coloured_by_what_is_better() -> None:
    assert _change("+0.100", "kinds.unanswerable_answered") == "worse"
    assert _change("+0.100", "kinds.unanswerable_abstained") == "better"
    assert _change("-0.100", "kinds.answerable_abstained") == "better"
    assert _change("+2", "kinds.counts.answerable_answered") == "better"
    assert _change("+0.100", "kinds.answerable_closest") == ""  # neither better nor worse
    assert _change("+0.100", "kinds.mean_confidence") == ""
