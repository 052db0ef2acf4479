"""Rank fusion on hand-made rankings with known results."""

from __future__ import annotations

import pytest

from qa.retrieval import fusion


def test_ranks_follow_descending_scores() -> None:
    assert fusion.ranks({"a": 0.1, "b": 0.9, "c": 0.5}) == {"b": 1, "c": 2, "a": 3}


def test_rrf_sums_reciprocal_ranks() -> None:
    dense = {"a": 0.9, "b": 0.8, "c": 0.7}
    keyword = {"c": 12.0, "a": 3.0, "d": 1.0}
    fused = fusion.rrf([dense, keyword], k=60)
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["d"] == pytest.approx(1 / 63)
    # a (ranks 1 and 2) beats c (ranks 3 and 1); both beat the single-list hits.
    assert sorted(fused, key=lambda x: -fused[x]) == ["a", "c", "b", "d"]


def test_min_max_scales_to_unit_range() -> None:
    assert fusion.min_max({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert fusion.min_max({"a": 5.0, "b": 5.0}) == {"a": 1.0, "b": 1.0}
    assert fusion.min_max({}) == {}


def test_convex_weights_the_scaled_lists() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    keyword = {"c": 10.0, "b": 5.0}
    fused = fusion.convex(dense, keyword, 0.25)
    assert fused == pytest.approx({"a": 0.25, "b": 0.25 * 0.5 + 0.0, "c": 0.75})
    assert fusion.convex(dense, keyword, 1.0) == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})
    only_keyword = fusion.convex(dense, keyword, 0.0)
    assert max(only_keyword, key=lambda x: only_keyword[x]) == "c"


def test_convex_rejects_a_weight_outside_0_1() -> None:
    with pytest.raises(ValueError, match="weight"):
        fusion.convex({"a": 1.0}, {"a": 1.0}, 1.5)
