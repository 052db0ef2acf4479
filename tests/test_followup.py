"""qa.answering.followup: non-LLM rewriting of follow-up questions into standalone ones."""

from __future__ import annotations

import pytest

from qa.answering.followup import rewrite_followup
from qa.types import Turn


def users(*questions: str) -> list[Turn]:
    return [Turn("user", q) for q in questions]


@pytest.mark.parametrize(
    ("question", "history", "expected"),
    [
        # A lone "it" with one named thing before: the pronoun is replaced.
        (
            "Who ruled it in the 10th century?",
            users("Where is Normandy?"),
            "Who ruled Normandy in the 10th century?",
        ),
        (
            "Where is their headquarters?",
            users("Who founded BSkyB?"),
            "Where is BSkyB's headquarters?",
        ),
        # "What about X?" swaps X into the earlier question.
        (
            "What about Kunming?",
            users("What is the maximum subsidy in Huangpu District?"),
            "What is the maximum subsidy in Kunming?",
        ),
        (
            "What about Kunming?",
            users("What is the maximum subsidy?"),
            "What is the maximum subsidy (Kunming)?",
        ),
        # Otherwise the earlier turn's key words are carried along in brackets.
        (
            "How many were in it?",
            users("What is the first batch of filing projects?"),
            "How many were in it (first batch filing projects)?",
        ),
        (
            "When does it take effect?",
            users(
                "When did the National People's Congress Standing Committee pass the "
                "cryptography law?"
            ),
            "When does it take effect (National People's Congress Standing Committee pass "
            "cryptography law)?",
        ),
        (
            "And how many were in the second one?",
            users(
                "How many filing projects were in the first batch distributed by the national "
                "network letter office?"
            ),
            "How many were in the second one (filing projects batch distributed national "
            "network letter office)?",
        ),
        (
            "What did he say the next step should be?",
            users("Which lawyer from Beijing Anli Law Firm is quoted on privacy protection?"),
            "What did he say the next step should be (lawyer Beijing Anli Law Firm quoted "
            "privacy protection)?",
        ),
        # A chain: the middle turn is resolved first, then carried into the last one.
        (
            "What did the same organisation issue in January 2018?",
            users(
                "Which organisation issued the tips on preventing virtual currency risks "
                "such as Bitcoin?",
                "When did it issue them?",
            ),
            "What did the same organisation issue in January 2018 (issued tips preventing "
            "virtual currency risks Bitcoin)?",
        ),
        # Assistant turns are not questions: the last *user* turn is the reference.
        (
            "What is its capital?",
            [Turn("user", "Tell me about Victoria"), Turn("assistant", "It is in Australia.")],
            "What is Victoria's capital?",
        ),
    ],
)
def test_follow_ups_become_standalone(question: str, history: list[Turn], expected: str) -> None:
    assert rewrite_followup(question, history) == expected


@pytest.mark.parametrize(
    ("question", "history"),
    [
        ("Who was the Norse leader?", users("Where is Normandy?")),
        ("Who ruled it?", []),
        ("Who ruled it?", [Turn("assistant", "Hello! Ask me about the documents.")]),
        ("In what country is Normandy located?", users("Who was Rollo?")),
    ],
)
def test_standalone_questions_come_back_unchanged(question: str, history: list[Turn]) -> None:
    assert rewrite_followup(question, history) == question
