"""`qa calibrate`: fit the extractive answerer's abstention threshold to your own questions.

    qa calibrate QUESTIONS.jsonl [--index DIR] [--max-false-abstention 0.05] [--dry-run]
    qa calibrate --feedback [--holdout 0.5]     # readers' feedback beside the index

The questions use the `qa eval` format; one with `"answers": []` or `"answerable": false` is one
the documents do not answer. Each question is retrieved and analysed once; its confidence (0 when
a guard rule abstains whatever the threshold) is compared with every threshold of a grid. The
table shows, per threshold, abstention recall (unanswerable questions refused), false abstention
(answerable ones refused) and abstention F1. The threshold chosen is the one with the best F1
whose false abstention stays within `--max-false-abstention`; it is saved as `calibration.json`
in the index folder, where `qa ask`, `qa serve` and `qa eval` pick it up. An explicit
`--abstain-threshold` (or QA_ABSTAIN_THRESHOLD) still wins, and `qa index` keeps the file when
it rebuilds the folder.

With `--holdout F` (0.5 by default for questions made from feedback: `--feedback`, or a file
from `qa feedback export`) a share F of the questions is held out: the latest feedback by time,
other questions by a hash of their id. The threshold is fitted on the rest only, and its effect
on the held-out questions (before: the threshold in use now; after: the fitted one) is shown
and saved with it; the questions it reports are never the ones it was tuned on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from qa.errors import ConfigError
from qa.stores.folder import CALIBRATION_FILE

if TYPE_CHECKING:
    from rich.console import Console

    from qa.config import Settings
    from qa.evaluation.questions import EvalQuestion
    from qa.pipeline import Pipeline

GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class Tradeoff:
    """What one threshold does on the labelled questions."""

    threshold: float
    recall: float | None  # unanswerable questions abstained on
    false_abstention: float | None  # answerable questions abstained on
    f1: float | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl", nargs="?")
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="add the questions made from readers' feedback beside the index",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=None,
        metavar="F",
        help="hold out this share to report the effect on (default 0.5 with feedback, else 0)",
    )
    parser.add_argument(
        "--max-false-abstention",
        type=float,
        default=0.05,
        metavar="X",
        help="the share of answerable questions you accept to see refused (default: 0.05)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show the table without saving the threshold"
    )
    parser.add_argument(
        "--json",
        dest="json_out",
        type=Path,
        metavar="OUT.json",
        help="also write the calibration record (the table, the held-out effect) here",
    )


def confidences(pipeline: Pipeline, questions: Sequence[EvalQuestion]) -> list[float]:
    """The extractive answerer's confidence per question (0.0 where a guard rule abstains)."""
    from qa.answering.extractive.answerer import ExtractiveAnswerer

    answerer = pipeline.answerer()
    if not isinstance(answerer, ExtractiveAnswerer):
        raise ConfigError(
            f"qa calibrate fits the extractive answerer's threshold; answerer {answerer.name!r} "
            "has no confidence to calibrate. Use --answerer extractive."
        )
    out = []
    for q in questions:
        standalone = pipeline.standalone_question(q.question, q.history, answerer)
        passages = pipeline.search(standalone)
        if not passages:
            out.append(0.0)
            continue
        analysis = answerer.analyse(standalone, passages)
        out.append(0.0 if analysis.guard is not None else analysis.confidence)
    return out


def tradeoffs(confidence: Sequence[float], unanswerable: Sequence[bool]) -> list[Tradeoff]:
    """Abstention recall, false abstention and F1 at each threshold of GRID."""
    return [tradeoff_at(t, confidence, unanswerable) for t in GRID]


def tradeoff_at(t: float, confidence: Sequence[float], unanswerable: Sequence[bool]) -> Tradeoff:
    """What threshold `t` does on questions with these confidences and labels."""
    n_una = sum(unanswerable)
    n_ans = len(unanswerable) - n_una
    abstain = [c < t for c in confidence]
    tp = sum(a and u for a, u in zip(abstain, unanswerable, strict=True))
    fp = sum(a and not u for a, u in zip(abstain, unanswerable, strict=True))
    fn = n_una - tp
    return Tradeoff(
        t,
        tp / n_una if n_una else None,
        fp / n_ans if n_ans else None,
        2 * tp / (2 * tp + fp + fn) if n_una else None,
    )


def split_questions(
    questions: Sequence[EvalQuestion], holdout: float
) -> tuple[list[EvalQuestion], list[EvalQuestion]]:
    """(fit, held out): the latest `holdout` share of the feedback questions by time, and of
    the others by a hash of the id (stable across runs, blind to the labels)."""
    if holdout <= 0:
        return list(questions), []
    fed = sorted(
        (q for q in questions if q.feedback is not None),
        key=lambda q: (q.feedback.created_at if q.feedback else "", q.id),
    )
    n_fit = len(fed) - round(holdout * len(fed))
    fit, held = fed[:n_fit], fed[n_fit:]
    for q in questions:
        if q.feedback is None:
            digest = int(hashlib.sha256(q.id.encode()).hexdigest()[:8], 16)
            (held if digest / 0xFFFFFFFF < holdout else fit).append(q)
    return fit, held


def choose(rows: Sequence[Tradeoff], max_false_abstention: float) -> Tradeoff:
    """The best-F1 threshold within the false-abstention budget (ties: the lower threshold)."""
    allowed = [r for r in rows if (r.false_abstention or 0.0) <= max_false_abstention + 1e-12]
    if not allowed:
        return rows[0]
    return max(allowed, key=lambda r: (r.f1 or 0.0, -r.threshold))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from qa.pipeline import Pipeline

    if settings.store != "faiss" and not args.dry_run:
        raise ConfigError(
            "qa calibrate saves into a FAISS index folder; with store=postgres pass the "
            "threshold it shows (--dry-run) as QA_ABSTAIN_THRESHOLD instead."
        )
    every = _questions(args, settings)
    holdout = args.holdout
    if holdout is None:
        holdout = 0.5 if any(q.feedback is not None for q in every) else 0.0
    if not 0 <= holdout < 1:
        raise ConfigError(f"--holdout {holdout} must be at least 0 and below 1, e.g. 0.5.")
    questions, held = split_questions(every, holdout)
    source = str(args.questions or "the feedback")
    unanswerable = [q.should_abstain for q in questions]
    if all(unanswerable) or not any(unanswerable):
        raise ConfigError(
            f"{source} needs both answerable and unanswerable questions (with "
            '"answers": [] or "answerable": false) to calibrate abstention'
            + (f" among the {len(questions)} it fits on (the rest is held out)" if held else "")
            + "."
        )
    pipeline = Pipeline.load(settings)
    rows = tradeoffs(confidences(pipeline, questions), unanswerable)
    best = choose(rows, args.max_false_abstention)
    console = Console()
    title = f"abstention trade-off on {len(questions)} questions"
    table = Table(title=title + (f" (fitted; {len(held)} held out)" if held else ""))
    for header in ("threshold", "abstention recall", "false abstention", "abstention F1"):
        table.add_column(header, justify="right")
    for r in rows:
        mark = " <-" if r is best else ""
        table.add_row(
            f"{r.threshold:.2f}{mark}", *(_fmt(v) for v in (r.recall, r.false_abstention, r.f1))
        )
    console.print(table)
    # Shown before anything is saved, measured on questions the fit never saw.
    effect = _held_out(pipeline, held, best.threshold, console) if held else None
    record: dict[str, object] = {
        "abstain_threshold": best.threshold,
        "answerer": "extractive",
        "questions": source,
        "n_questions": len(questions),
        "n_unanswerable": sum(unanswerable),
        "max_false_abstention": args.max_false_abstention,
        "chosen": best.__dict__,
        "table": [r.__dict__ for r in rows],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if effect is not None:
        record["held_out"] = effect
    if args.json_out:
        args.json_out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if args.dry_run:
        console.print(f"best threshold {best.threshold:.2f} (not saved: --dry-run)")
        return 0
    path = Path(settings.index_dir) / CALIBRATION_FILE
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    console.print(
        f"saved abstain_threshold {best.threshold:.2f} to {path}; qa ask / serve / eval use it"
    )
    return 0


def _questions(args: argparse.Namespace, settings: Settings) -> list[EvalQuestion]:
    from qa.evaluation.questions import load_questions

    if args.questions is None and not args.feedback:
        raise ConfigError(
            "Give a question set (QUESTIONS.jsonl) or --feedback (the readers' feedback "
            "beside the index), or both."
        )
    questions = list(load_questions(args.questions).questions) if args.questions else []
    if args.feedback:
        from qa.evaluation.feedback import feedback_evalset

        seen = {q.id for q in questions}
        questions += [q for q in feedback_evalset(settings).questions if q.id not in seen]
    return questions


def _held_out(
    pipeline: Pipeline, held: Sequence[EvalQuestion], threshold: float, console: Console
) -> dict[str, object]:
    """Before (the threshold in use) and after (the fitted one) on the held-out questions."""
    from rich.table import Table

    now = float(getattr(pipeline.answerer(), "abstain_threshold", 0.0))
    labels = [q.should_abstain for q in held]
    scores = confidences(pipeline, held)
    before, after = tradeoff_at(now, scores, labels), tradeoff_at(threshold, scores, labels)
    table = Table(
        title=f"held-out effect on {len(held)} questions ({sum(labels)} unanswerable), "
        "not used to fit"
    )
    for header in ("", "threshold", "abstention recall", "false abstention", "abstention F1"):
        table.add_column(header, justify="right")
    for name, r in (("before", before), ("after", after)):
        table.add_row(
            name, f"{r.threshold:.2f}", *(_fmt(v) for v in (r.recall, r.false_abstention, r.f1))
        )
    console.print(table)
    return {
        "n": len(held),
        "n_unanswerable": sum(labels),
        "split": "feedback by time (latest held out), other questions by id hash",
        "before": before.__dict__,
        "after": after.__dict__,
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
