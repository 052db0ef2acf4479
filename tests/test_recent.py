"""A repeated question reuses its retrieval, and its answer where the answerer is deterministic;
a conversation, another answerer or another k never gets someone else's answer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from qa.answering.registry import Resources, register_answerer, unregister_answerer
from qa.config import Settings
from qa.pipeline import Pipeline
from qa.recent import Recent
from qa.types import Answer, Passage, Turn

QUESTION = "When were the blockchain information service regulations issued?"


def test_recent_keeps_the_last_used_entries() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # "a" is now the most recent, so "b" goes first
    recent.put("c", 3)
    assert recent.get("b") is None
    assert (recent.get("a"), recent.get("c"), len(recent)) == (1, 3, 2)
    recent.put("a", 4)  # a new value for a key replaces the old one
    assert recent.get("a") == 4 and len(recent) == 2
    recent.clear()
    assert len(recent) == 0 and recent.get("a") is None
    nothing: Recent[str, int] = Recent(0)
    assert nothing.put("a", 1) == 1 and nothing.get("a") is None
    with pytest.raises(ValueError, match="size"):
        Recent(-1)


def _count(monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> list[int]:
    """Count the calls to obj.name (the real method still runs)."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


def test_a_repeated_question_reuses_its_retrieval_and_answer(
    demo_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = demo_pipeline.reopen()  # empty caches, the shared model
    answerer = pipeline.answerer()
    retrievals = _count(monkeypatch, pipeline.retriever, "explain")
    answers = _count(monkeypatch, answerer, "answer")

    first = pipeline.ask(QUESTION)
    again = pipeline.ask(f"  {QUESTION} ")  # the same question once stripped
    assert (len(retrievals), len(answers)) == (1, 1)
    assert not first.abstained and again.answer == first.answer
    assert again.citations == first.citations and again.passages == first.passages
    assert [name for name, _ in again.timings_ms] == [name for name, _ in first.timings_ms]

    pipeline.ask(QUESTION, top_k=2)  # another k is another retrieval and answer
    assert (len(retrievals), len(answers)) == (2, 2)
    streamed = list(pipeline.ask_stream(QUESTION))[-1].data
    assert streamed.answer == first.answer and (len(retrievals), len(answers)) == (2, 2)

    history = (Turn("user", QUESTION), Turn("assistant", first.answer))
    pipeline.ask(QUESTION, history=history)  # an answer in a conversation is made afresh
    assert len(answers) == 3


def test_recall_gives_a_kept_answer_and_nothing_else(demo_pipeline: Pipeline) -> None:
    pipeline = demo_pipeline.reopen()
    assert pipeline.recall(QUESTION) is None  # never asked here
    first = pipeline.ask(QUESTION, explain=True)
    recalled = pipeline.recall(f" {QUESTION}", explain=True)
    assert recalled is not None
    assert (recalled.answer, recalled.citations) == (first.answer, first.citations)
    assert recalled.candidates == first.candidates and recalled.question == QUESTION
    assert pipeline.recall(QUESTION, top_k=2) is None  # another retrieval depth
    history = (Turn("user", "What is this about?"), Turn("assistant", "Blockchain policy."))
    assert pipeline.recall(QUESTION, history=history) is None


class _Numbered:
    """Fake: a different answer every call (as an LLM's may be), so it is never reused."""

    name = "numbered"
    description = "Counts its answers."

    def __init__(self) -> None:
        self.calls = 0

    def answer(
        self, question: str, passages: Sequence[Passage], *, history: Sequence[Turn] = ()
    ) -> Answer:
        self.calls += 1
        return Answer(question=question, answer=f"answer {self.calls}", answerer=self.name)


def test_an_answerer_that_is_not_deterministic_answers_every_time(
    demo_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def factory(settings: Settings, resources: Resources) -> _Numbered:
        return _Numbered()

    register_answerer("numbered", factory, _Numbered.description)
    try:
        pipeline = demo_pipeline.reopen()
        retrievals = _count(monkeypatch, pipeline.retriever, "explain")
        texts = [pipeline.ask(QUESTION, answerer="numbered").answer for _ in range(2)]
        assert texts == ["answer 1", "answer 2"]
        assert len(retrievals) == 1  # the retrieval is still reused
        # The deterministic default answerer on the same question does not get its answer.
        assert pipeline.ask(QUESTION).answerer == "extractive"
    finally:
        unregister_answerer("numbered")
