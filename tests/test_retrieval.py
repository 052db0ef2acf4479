"""Retrieval on the demo corpus: the answer-bearing passage ranks in the top 3 (every question)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DEMO_DOC_ID, DEMO_QUESTIONS


def _answerable() -> list[dict]:
    rows = [json.loads(line) for line in DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["answerable"] and not r.get("history")]


def _holds_answer(passage, document_text: str, row: dict) -> bool:  # type: ignore[no-untyped-def]
    """The passage covers most of an evidence sentence and contains a gold answer."""
    chunk = passage.chunk
    if not any(a in chunk.text for a in row["answers"]):
        return False
    for evidence in row["evidence"]:
        start = document_text.index(evidence)
        end = start + len(evidence)
        covered = max(0, min(end, chunk.end) - max(start, chunk.start))
        if covered >= 0.5 * len(evidence):
            return True
    return False


ROWS = _answerable()


def test_question_set_is_big_enough() -> None:
    assert len(ROWS) >= 12


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_answer_passage_in_top_3(demo_pipeline, row: dict) -> None:  # type: ignore[no-untyped-def]
    passages = demo_pipeline.search(row["question"], k=3)
    text = demo_pipeline.document(DEMO_DOC_ID).text
    assert [p.rank for p in passages] == [1, 2, 3]
    assert any(_holds_answer(p, text, row) for p in passages), [p.chunk.text[:80] for p in passages]


def test_filing_question_ranks_filing_passage_first(demo_pipeline) -> None:  # type: ignore[no-untyped-def]
    question = "What must blockchain information service providers do under the 2019 regulations?"
    top = demo_pipeline.search(question, k=3)[0]
    assert "fill in the filing information" in top.chunk.text


def test_retrieve_many_matches_retrieve(demo_pipeline) -> None:  # type: ignore[no-untyped-def]
    questions = [r["question"] for r in ROWS[:5]]
    batch = demo_pipeline.retriever.retrieve_many(questions, 4)
    for question, passages in zip(questions, batch, strict=True):
        single = demo_pipeline.retriever.retrieve(question, 4)
        assert [p.chunk.id for p in passages] == [p.chunk.id for p in single]
        assert [p.score for p in passages] == pytest.approx([p.score for p in single], abs=1e-5)
