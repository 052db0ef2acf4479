"""Rank fusion of the dense and keyword result lists (pure functions over score maps).

Both take `{id: score}` maps, one per retriever, and return `{id: fused score}` over the union.
- `rrf`: reciprocal rank fusion, sum of 1 / (k + rank): needs no score calibration.
- `convex`: w * dense + (1 - w) * keyword after min-max scaling each list to [0, 1]; an id
  missing from a list gets that list's minimum (it ranked below every listed id). It beats RRF
  on SciFact's train split when the weight is tuned (bench/retrieval.py --tune), so it is the
  default.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def ranks(scores: Mapping[K, float]) -> dict[K, int]:
    """1-based ranks by descending score (ties keep the map's order)."""
    ordered = sorted(scores, key=lambda key: -scores[key])
    return {key: i for i, key in enumerate(ordered, start=1)}


def rrf(lists: Sequence[Mapping[K, float]], k: int = 60) -> dict[K, float]:
    """Reciprocal rank fusion of several score maps."""
    fused: dict[K, float] = {}
    for scores in lists:
        for key, rank in ranks(scores).items():
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return fused


def min_max(scores: Mapping[K, float]) -> dict[K, float]:
    """Scores scaled to [0, 1] (all 1.0 when they are equal)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high <= low:
        return dict.fromkeys(scores, 1.0)
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def convex(
    dense: Mapping[K, float], keyword: Mapping[K, float], weight: float = 0.5
) -> dict[K, float]:
    """weight * dense + (1 - weight) * keyword, each min-max scaled; missing -> 0 (the minimum)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    d, kw = min_max(dense), min_max(keyword)
    return {
        key: weight * d.get(key, 0.0) + (1.0 - weight) * kw.get(key, 0.0)
        for key in {**dense, **keyword}
    }
