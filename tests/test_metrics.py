"""qa.evaluation.metrics on hand-made rankings and answers whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest

from qa.evaluation import metrics as m


def test_ndcg_binary_log2_discount_ideal_from_relevant_count() -> None:
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal (2 relevant) = 1 + 1/log2(3).
    assert m.ndcg_at_k(["d1", "x", "d2"], {"d1", "d2"}, 10) == pytest.approx(
        1.5 / (1 + 1 / math.log2(3)), abs=1e-12
    )
    assert m.ndcg_at_k(["x", "y", "d1"], {"d1"}, 10) == pytest.approx(0.5, abs=1e-12)
    assert m.ndcg_at_k(["a", "b"], {"a", "b"}, 10) == 1.0
    assert m.ndcg_at_k(["x", "y"], {"d1"}, 10) == 0.0
    assert m.ndcg_at_k(["x", "d1"], {"d1"}, 1) == 0.0  # cut at k


def test_ndcg_ideal_is_capped_at_k() -> None:
    relevant = {f"d{i}" for i in range(12)}
    assert m.ndcg_at_k([f"d{i}" for i in range(10)], relevant, 10) == pytest.approx(1.0)


def test_mrr_hit_recall() -> None:
    ranked = ["x", "y", "d2", "d1", "z"]
    assert m.mrr_at_k(ranked, {"d1", "d2"}, 10) == pytest.approx(1 / 3)
    assert m.mrr_at_k(ranked, {"d1"}, 3) == 0.0
    assert m.hit_at_k(ranked, {"d1"}, 4) == 1.0
    assert m.hit_at_k(ranked, {"d1"}, 3) == 0.0
    assert m.recall_at_k(ranked, {"d1", "d2", "d3", "d4"}, 5) == 0.5
    assert m.recall_at_k(ranked, {"d1", "d2", "d3", "d4"}, 3) == 0.25
    assert m.recall_at_k(ranked, set(), 3) == 0.0


def test_dedupe_keeps_the_first_rank() -> None:
    assert m.dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_squad_normalisation() -> None:
    assert m.normalize_answer("The  Normans, (in) France!") == "normans in france"
    assert m.normalize_answer("An apple a day") == "apple day"
    assert m.normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_and_f1_take_the_best_gold() -> None:
    assert m.exact_match("the Normans.", ["Normans"]) == 1.0
    assert m.exact_match("Norman", ["Normans"]) == 0.0
    pred = "in the 10th and 11th centuries"
    # 5 predicted tokens, 4 gold tokens, 4 in common: P=0.8, R=1.0.
    assert m.token_f1(pred, ["10th and 11th centuries"]) == pytest.approx(2 * 0.8 / 1.8)
    assert m.token_f1(pred, ["10th and 11th centuries", "in the 10th and 11th centuries"]) == 1.0
    assert m.token_f1("blue red red", ["red red green"]) == pytest.approx(2 / 3)


def test_empty_answers_follow_squad_v2() -> None:
    assert m.exact_match("", []) == 1.0
    assert m.token_f1("", []) == 1.0
    assert m.token_f1("France", []) == 0.0
    assert m.token_f1("", ["France"]) == 0.0


def test_contains_gold_on_word_boundaries() -> None:
    assert m.contains_gold("It was in France, in 911.", ["France"]) == 1.0
    assert m.contains_gold("It was in France.", ["Fran"]) == 0.0
    assert m.contains_gold("Rollo, the Viking", ["Paris", "the viking"]) == 1.0


def test_abstention_counting() -> None:
    # (should_abstain, abstained): TP=2, FN=1, FP=1, TN=3; 4 answerable questions.
    pairs = [(True, True), (True, True), (True, False), (False, True)] + [(False, False)] * 3
    s = m.abstention_scores(pairs)
    assert (s.true_pos, s.false_pos, s.false_neg, s.n_answerable) == (2, 1, 1, 4)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.false_abstention_rate == 0.25


def test_abstention_without_positives_is_null() -> None:
    s = m.abstention_scores([(False, False), (False, False)])
    assert (s.precision, s.recall, s.f1, s.false_abstention_rate) == (None, None, None, 0.0)
    never = m.abstention_scores([(True, False)])
    assert (never.precision, never.recall, never.f1) == (None, 0.0, None)
    wrong = m.abstention_scores([(True, False), (False, True)])
    assert (wrong.precision, wrong.recall, wrong.f1) == (0.0, 0.0, 0.0)


def test_kind_counts_split_by_answerable() -> None:
    # (should_abstain, kind): 4 answerable questions, 2 unanswerable.
    pairs = [
        (False, "answered"), (False, "answered"), (False, "closest"), (False, "abstained"),
        (True, "closest"), (True, "abstained"),
    ]  # fmt: skip
    counts = m.kind_counts(pairs)
    assert counts == {
        "answered": 2, "closest": 2, "abstained": 2,
        "answerable_answered": 2, "answerable_closest": 1, "answerable_abstained": 1,
        "unanswerable_answered": 0, "unanswerable_closest": 1, "unanswerable_abstained": 1,
    }  # fmt: skip
    shares = m.kind_shares(counts)
    assert shares == {
        "answered": 2 / 6, "closest": 2 / 6, "abstained": 2 / 6,
        "answerable_answered": 0.5, "answerable_closest": 0.25, "answerable_abstained": 0.25,
        "unanswerable_answered": 0.0, "unanswerable_closest": 0.5, "unanswerable_abstained": 0.5,
    }  # fmt: skip


def test_kind_shares_of_an_empty_group_are_null() -> None:
    shares = m.kind_shares(m.kind_counts([(False, "answered")]))
    assert shares["answered"] == shares["answerable_answered"] == 1.0
    assert shares["unanswerable_answered"] is None and shares["unanswerable_closest"] is None
    assert set(m.kind_shares(m.kind_counts([])).values()) == {None}


def test_percentile_interpolates_like_numpy() -> None:
    assert m.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert m.percentile([7.0], 95) == 7.0
    assert m.percentile([], 50) is None


def test_mean_and_ratio_skip_what_does_not_apply() -> None:
    assert m.mean([1.0, None, 0.0]) == 0.5
    assert m.mean([None]) is None
    assert m.ratio(1, 4) == 0.25
    assert m.ratio(0, 0) is None
