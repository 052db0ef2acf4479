"""Score evaluation outcomes question by question and aggregate them into the report dict.

Definitions (a metric that does not apply to any question is None):
- retrieval (questions with gold_ids or evidence): `hit@k`, `recall@k` and `recall@100` over
  documents ranked by their best chunk (gold_ids) or over passages (evidence: share of the
  evidence strings covered); `mrr@10`, `ndcg@10` as in BEIR. k is the `-k` of the run.
- answers (answerable questions with gold answers): `em` and `f1` of `short_answer` when the
  answerer gives one, else of the answer text (an abstention predicts ""); `contains_gold` when a
  gold answer occurs in the answer text; `quotes_evidence` = answered questions with `evidence`
  whose quotes hold at least one whole gold sentence (`qa.evaluation.questions.quotes_evidence`).
  `squad2_em` / `squad2_f1` also count unanswerable questions, where abstaining is the right
  (empty) prediction, as the SQuAD v2 script does.
- citations: `precision` = cited passages that are relevant / citations (questions with labels);
  `recall` = answered questions with a relevant passage among those shown whose citations
  include at least one relevant passage; `supported` = citations verified as supporting.
- abstention: abstaining counts as predicting "unanswerable"; `false_abstention_rate` =
  abstentions on answerable questions / answerable questions. Only kind "abstained" abstains:
  a "closest" answer (the closest passage, shown as maybe not answering) does not.
- kinds: the share of questions given each kind of answer, "answered", "closest" or
  "abstained": over all questions (`kinds.closest`), over the answerable ones
  (`kinds.answerable_closest`) and over the unanswerable ones (`kinds.unanswerable_answered`:
  unanswerable questions given as answered); `kinds.counts` the same as numbers of questions;
  `mean_confidence` over the answers that carry a confidence.
- latency_ms: p50 / p95 of the total time per question, and per stage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qa.evaluation import metrics as m
from qa.evaluation.questions import (
    EvalQuestion,
    Ranking,
    passage_relevant,
    quotes_evidence,
    rank_keys,
)
from qa.types import Answer, Passage

DEEP_K = 100  # depth of the doc-level ranking behind recall@100
CURVE_DEPTHS = (1, 2, 3, 5, 10, 20, 50, 100)
_MARKER = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True)
class Outcome:
    """What the system did for one question: its ranking, and its answer unless retrieval-only."""

    question: EvalQuestion
    retrieved: tuple[Passage, ...]
    answer: Answer | None = None


@dataclass(frozen=True)
class QuestionScore:
    """Per-question metric values; None where a metric does not apply."""

    outcome: Outcome
    retrieval: dict[str, float] | None
    answer: dict[str, float] | None
    squad2: dict[str, float] | None
    citations: tuple[bool | None, ...] = ()
    supported: tuple[bool, ...] = ()
    cited_relevant: bool | None = None
    quotes_evidence: bool | None = None
    abstain: tuple[bool, bool] | None = None
    latency: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def _recall(ranking: Ranking, depth: int) -> float:
    covered = set().union(*ranking.covers[:depth]) & ranking.targets
    return len(covered) / len(ranking.targets)


def _retrieval(ranking: Ranking, k: int) -> dict[str, float]:
    return {
        f"hit@{k}": m.hit_at_k(ranking.keys, ranking.relevant, k),
        f"recall@{k}": _recall(ranking, k),
        "recall@100": _recall(ranking, DEEP_K),
        "mrr@10": m.mrr_at_k(ranking.keys, ranking.relevant, 10),
        "ndcg@10": m.ndcg_at_k(ranking.keys, ranking.relevant, 10),
    }


def score_question(outcome: Outcome, *, k: int) -> QuestionScore:
    """All metric values of one question."""
    q, answer = outcome.question, outcome.answer
    ranking = rank_keys(q, outcome.retrieved)
    retrieval = _retrieval(ranking, k) if ranking is not None else None
    reasons = []
    if retrieval is not None and not retrieval[f"hit@{k}"]:
        reasons.append("retrieval miss")
    if answer is None:
        return QuestionScore(outcome, retrieval, None, None, reasons=tuple(reasons))

    # [n] markers are not part of the answer: "Paris [1]" must match "Paris".
    text = _MARKER.sub("", answer.answer).strip()
    prediction = "" if answer.abstained else (answer.short_answer or text)
    full_text = "" if answer.abstained else f"{answer.answer}\n{answer.short_answer or ''}"
    scored = None
    squad2 = None
    if q.answers and not q.should_abstain:
        scored = {
            "em": m.exact_match(prediction, q.answers),
            "f1": m.token_f1(prediction, q.answers),
            "contains_gold": m.contains_gold(full_text, q.answers),
        }
        squad2 = {"em": scored["em"], "f1": scored["f1"]}
        if not answer.abstained and not scored["contains_gold"]:
            reasons.append("wrong answer")
    elif q.should_abstain:
        squad2 = {"em": float(answer.abstained), "f1": float(answer.abstained)}
    if answer.abstained and not q.should_abstain:
        reasons.append("false abstention")
    if q.should_abstain and not answer.abstained:
        reasons.append("missed abstention")

    by_rank = {p.rank: p for p in answer.passages}
    cited = tuple(
        passage_relevant(q, by_rank[c.n]) if c.n in by_rank else False for c in answer.citations
    )
    shown_relevant = any(passage_relevant(q, p) for p in answer.passages)
    cited_relevant = (
        any(bool(c) for c in cited)
        if q.has_relevance and shown_relevant and not answer.abstained
        else None
    )
    quoted = (
        quotes_evidence([c.quote for c in answer.citations], q.evidence)
        if q.evidence and not q.should_abstain and not answer.abstained
        else None
    )
    return QuestionScore(
        outcome,
        retrieval,
        scored,
        squad2,
        citations=cited if q.has_relevance else (),
        supported=tuple(c.supported for c in answer.citations),
        cited_relevant=cited_relevant,
        quotes_evidence=quoted,
        abstain=(q.should_abstain, answer.abstained),
        latency=dict(answer.timings_ms),
        reasons=tuple(reasons),
    )


def _mean_of(rows: Sequence[dict[str, float] | None], key: str) -> float | None:
    return m.mean(r[key] for r in rows if r is not None)


def _latency(scores: Sequence[QuestionScore]) -> dict[str, Any]:
    stages = sorted({s for q in scores for s in q.latency if s != "total"})
    totals = [q.latency["total"] for q in scores if "total" in q.latency]
    out: dict[str, Any] = {"p50": m.percentile(totals, 50), "p95": m.percentile(totals, 95)}
    for stage in stages:
        values = [q.latency[stage] for q in scores if stage in q.latency]
        out[stage] = {"p50": m.percentile(values, 50), "p95": m.percentile(values, 95)}
    return out


def summarize(scores: Sequence[QuestionScore], *, k: int) -> dict[str, Any]:
    """The aggregate metrics of a list of question scores (no failures, no by_type)."""
    ret = [s.retrieval for s in scores]
    ans = [s.answer for s in scores]
    sq2 = [s.squad2 for s in scores]
    cites = [c for s in scores for c in s.citations]
    supported = [c for s in scores for c in s.supported]
    recalls = [s.cited_relevant for s in scores if s.cited_relevant is not None]
    quoting = [s.quotes_evidence for s in scores if s.quotes_evidence is not None]
    answered = any(s.outcome.answer is not None for s in scores)
    abst = m.abstention_scores(s.abstain for s in scores if s.abstain is not None)
    return {
        "n": len(scores),
        "retrieval": {
            key: _mean_of(ret, key)
            for key in (f"hit@{k}", f"recall@{k}", "mrr@10", "ndcg@10", "recall@100")
        }
        | {"n": sum(r is not None for r in ret)},
        "answers": {
            "em": _mean_of(ans, "em"),
            "f1": _mean_of(ans, "f1"),
            "contains_gold": _mean_of(ans, "contains_gold"),
            "quotes_evidence": m.ratio(sum(quoting), len(quoting)),
            "squad2_em": _mean_of(sq2, "em"),
            "squad2_f1": _mean_of(sq2, "f1"),
            "n": sum(a is not None for a in ans),
        },
        "citations": {
            "precision": m.ratio(sum(bool(c) for c in cites), len(cites)),
            "recall": m.ratio(sum(recalls), len(recalls)),
            "supported": m.ratio(sum(supported), len(supported)),
            "n": len(supported),
        },
        "abstention": {
            "precision": abst.precision,
            "recall": abst.recall,
            "f1": abst.f1,
            "false_abstention_rate": abst.false_abstention_rate if answered else None,
        },
        "kinds": _kinds(scores),
        "latency_ms": _latency(scores),
    }


def _kinds(scores: Sequence[QuestionScore]) -> dict[str, Any]:
    answers = [
        (s.outcome.question.should_abstain, s.outcome.answer)
        for s in scores
        if s.outcome.answer is not None
    ]
    counts = m.kind_counts((should, a.kind) for should, a in answers)
    return {
        **m.kind_shares(counts),
        "mean_confidence": m.mean(a.confidence for _, a in answers),
        # Not measured, rather than zero, when nothing was answered (a retrieval-only run).
        "counts": counts if answers else dict.fromkeys(counts),
        "n": len(answers),
    }


def failure(score: QuestionScore, *, k: int) -> dict[str, Any]:
    """A failed question with what was retrieved and answered (for --json and the report)."""
    q, answer = score.outcome.question, score.outcome.answer
    shown = answer.passages if answer is not None else score.outcome.retrieved[:k]
    gold_rank = None
    ranking = rank_keys(q, score.outcome.retrieved)
    if ranking is not None:
        gold_rank = next(
            (i for i, key in enumerate(ranking.keys, 1) if key in ranking.relevant), None
        )
    return {
        "id": q.id,
        "question": q.question,
        "type": q.type,
        "reasons": list(score.reasons),
        "answers": list(q.answers),
        "gold_ids": list(q.gold_ids),
        "evidence": list(q.evidence),
        "first_relevant_rank": gold_rank,
        "answer": None if answer is None else answer.answer,
        "short_answer": None if answer is None else answer.short_answer,
        "abstained": None if answer is None else answer.abstained,
        "kind": None if answer is None else answer.kind,
        "confidence": None if answer is None else answer.confidence,
        "citations": [] if answer is None else [c.n for c in answer.citations],
        "retrieved": [
            {
                "n": p.rank,
                "doc_id": p.chunk.doc_id,
                "chunk_id": p.chunk.id,
                "score": round(p.score, 4),
                "relevant": passage_relevant(q, p),
                "text": p.chunk.text,
            }
            for p in shown
        ],
    }


def evaluate(outcomes: Sequence[Outcome], *, k: int) -> dict[str, Any]:
    """The full report dict: overall metrics, `by_type`, and the failed questions."""
    scores = [score_question(o, k=k) for o in outcomes]
    result = summarize(scores, k=k)
    types = sorted({s.outcome.question.type or "untyped" for s in scores})
    result["by_type"] = (
        {
            t: summarize([s for s in scores if (s.outcome.question.type or "untyped") == t], k=k)
            for t in types
        }
        if any(s.outcome.question.type for s in scores)
        else {}
    )
    rankings = [r for r in (rank_keys(o.question, o.retrieved) for o in outcomes) if r is not None]
    # Mean recall at each depth: the recall@k curve of the HTML report.
    result["recall_curve"] = {str(d): m.mean(_recall(r, d) for r in rankings) for d in CURVE_DEPTHS}
    result["failures"] = [failure(s, k=k) for s in scores if s.reasons]
    fed = [s for s in scores if s.outcome.question.feedback is not None]
    if fed:  # only for a set made (in part) from readers' feedback
        result["from_feedback"] = from_feedback(fed, k=k)
    return result


def from_feedback(scores: Sequence[QuestionScore], *, k: int) -> dict[str, Any]:
    """The questions made from readers' feedback: their metrics and each one's outcome."""
    summary = summarize(scores, k=k)
    rows = []
    for s in scores:
        q, answer, origin = s.outcome.question, s.outcome.answer, s.outcome.question.feedback
        assert origin is not None
        rows.append(
            {
                "id": q.id,
                "question": q.question,
                "rating": origin.rating,
                "feedback_kind": origin.kind,
                "created_at": origin.created_at,
                "expected": "abstain" if q.should_abstain else "answer",
                "answers": list(q.answers),
                "answer": None if answer is None else answer.answer,
                "kind": None if answer is None else answer.kind,
                "passed": not s.reasons,
                "reasons": list(s.reasons),
            }
        )
    return {
        "n": len(scores),
        "passed": sum(r["passed"] for r in rows),
        "abstention": summary["abstention"],
        "answers": summary["answers"],
        "questions": rows,
    }


@dataclass(frozen=True)
class Run:
    """One evaluated variant: its label, overrides, report dict and per-question latencies."""

    label: str
    overrides: dict[str, str]
    report: dict[str, Any]
    latencies_ms: tuple[float, ...]
