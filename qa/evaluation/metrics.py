"""Pure evaluation metrics: ranking, SQuAD answer scores, citations, abstention, the kinds of
answer given, percentiles.

Ranking metrics take `ranked` (ids best first, already deduplicated, e.g. document ids) and
`relevant` (the set of relevant ids) and use binary relevance, as BEIR / pytrec_eval do:

>>> ndcg_at_k(["a", "x", "b"], {"a", "b"}, 10)  # 1 + 1/log2(4) over 1 + 1/log2(3)
0.9197207891481876
>>> mrr_at_k(["x", "a"], {"a"}, 10)
0.5

Answer scores follow the official SQuAD evaluation script (normalise, then max over gold answers):

>>> exact_match("The Normans.", ["Normans"]), round(token_f1("in France", ["France"]), 3)
(1.0, 0.667)
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

# -- ranking ----------------------------------------------------------------------------------


def hit_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """1.0 when any of the top k is relevant, else 0.0."""
    return 1.0 if any(r in relevant for r in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the relevant ids found in the top k (0.0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """Reciprocal rank of the first relevant id within the top k (0.0 if none)."""
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """nDCG@k with binary gains, discount 1/log2(rank+1), ideal DCG from len(relevant)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(ranked[:k], 1) if r in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def dedupe(items: Iterable[Hashable]) -> list[Hashable]:
    """Items in first-seen order without repeats (chunks -> documents keeping the best rank)."""
    return list(dict.fromkeys(items))


# -- answers (SQuAD v2 official normalisation) -----------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer.

    With no gold answers (an unanswerable question) the empty prediction is the right one,
    as in SQuAD v2.
    """
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(g) for g in (golds or [""])))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # SQuAD v2: two empty answers agree; one empty answer gets nothing.
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Bag-of-tokens F1 of the normalised prediction, max over gold answers."""
    return max(_f1(prediction, g) for g in (golds or [""]))


def contains_gold(text: str, golds: Sequence[str]) -> float:
    """1.0 when a normalised gold answer occurs, on word boundaries, in the normalised text."""
    haystack = f" {normalize_answer(text)} "
    return float(any(n and f" {n} " in haystack for n in map(normalize_answer, golds)))


# -- abstention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbstentionScores:
    """Abstaining treated as predicting "unanswerable"; None where a denominator is zero."""

    precision: float | None
    recall: float | None
    f1: float | None
    false_abstention_rate: float | None
    true_pos: int
    false_pos: int
    false_neg: int
    n_answerable: int


def abstention_scores(pairs: Iterable[tuple[bool, bool]]) -> AbstentionScores:
    """Scores from (should_abstain, abstained) pairs, one per question."""
    tp = fp = fn = answerable = 0
    for should, did in pairs:
        tp += should and did
        fp += did and not should
        fn += should and not did
        answerable += not should
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else (0.0 if precision is not None and recall is not None else None)
    )
    rate = fp / answerable if answerable else None
    return AbstentionScores(precision, recall, f1, rate, tp, fp, fn, answerable)


# -- kinds of answer ---------------------------------------------------------------------------

KINDS = ("answered", "closest", "abstained")
_GROUPS = ("", "answerable_", "unanswerable_")


def kind_counts(pairs: Iterable[tuple[bool, str]]) -> dict[str, int]:
    """How many answers were of each kind, from (should_abstain, kind) pairs, one per question:
    overall (`closest`) and split by whether the question was answerable (`answerable_closest`,
    `unanswerable_closest`).

    >>> kind_counts([(False, "answered"), (True, "closest")])["unanswerable_closest"]
    1
    """
    counts = dict.fromkeys((group + kind for group in _GROUPS for kind in KINDS), 0)
    for should_abstain, kind in pairs:
        counts[kind] += 1
        counts[f"{'un' if should_abstain else ''}answerable_{kind}"] += 1
    return counts


def kind_shares(counts: dict[str, int]) -> dict[str, float | None]:
    """Each count of `kind_counts` as a share of its group: all questions, the answerable ones,
    or the unanswerable ones (None for an empty group)."""
    totals = {group: sum(counts[group + kind] for kind in KINDS) for group in _GROUPS}
    return {key: ratio(n, totals[key[: key.rfind("_") + 1]]) for key, n in counts.items()}


# -- aggregation --------------------------------------------------------------------------------


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the non-None values, or None when there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator, or None when the denominator is zero."""
    return numerator / denominator if denominator else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation (numpy's default), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
