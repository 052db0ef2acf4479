"""`qa calibrate`: fit the extractive answerer's abstention threshold to your own questions.

    qa calibrate QUESTIONS.jsonl [--index DIR] [--max-false-abstention 0.05] [--dry-run]

The questions use the `qa eval` format; one with `"answers": []` or `"answerable": false` is one
the documents do not answer. Each question is retrieved and analysed once; its confidence (0 when
a guard rule abstains whatever the threshold) is compared with every threshold of a grid. The
table shows, per threshold, abstention recall (unanswerable questions refused), false abstention
(answerable ones refused) and abstention F1. The threshold chosen is the one with the best F1
whose false abstention stays within `--max-false-abstention`; it is saved as `calibration.json`
in the index folder, where `qa ask`, `qa serve` and `qa eval` pick it up. An explicit
`--abstain-threshold` (or QA_ABSTAIN_THRESHOLD) still wins, and `qa index` keeps the file when
it rebuilds the folder.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from qa.errors import ConfigError
from qa.stores.folder import CALIBRATION_FILE

if TYPE_CHECKING:
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
    parser.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    parser.add_argument(
        "--max-false-abstention",
        type=float,
        default=0.05,
        help="the share of answerable questions you accept to see refused (default 0.05)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show the table without saving the threshold"
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
    rows = []
    n_una = sum(unanswerable)
    n_ans = len(unanswerable) - n_una
    for t in GRID:
        abstain = [c < t for c in confidence]
        tp = sum(a and u for a, u in zip(abstain, unanswerable, strict=True))
        fp = sum(a and not u for a, u in zip(abstain, unanswerable, strict=True))
        fn = n_una - tp
        rows.append(
            Tradeoff(
                t,
                tp / n_una if n_una else None,
                fp / n_ans if n_ans else None,
                2 * tp / (2 * tp + fp + fn) if n_una else None,
            )
        )
    return rows


def choose(rows: Sequence[Tradeoff], max_false_abstention: float) -> Tradeoff:
    """The best-F1 threshold within the false-abstention budget (ties: the lower threshold)."""
    allowed = [r for r in rows if (r.false_abstention or 0.0) <= max_false_abstention + 1e-12]
    if not allowed:
        return rows[0]
    return max(allowed, key=lambda r: (r.f1 or 0.0, -r.threshold))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.table import Table

    from qa.evaluation.questions import load_questions
    from qa.pipeline import Pipeline

    if settings.store != "faiss":
        raise ConfigError(
            "qa calibrate saves into a FAISS index folder; with store=postgres pass the "
            "threshold it shows (--dry-run) as QA_ABSTAIN_THRESHOLD instead."
        )
    evalset = load_questions(args.questions)
    questions = evalset.questions
    unanswerable = [q.should_abstain for q in questions]
    if all(unanswerable) or not any(unanswerable):
        raise ConfigError(
            f"{args.questions} needs both answerable and unanswerable questions (with "
            '"answers": [] or "answerable": false) to calibrate abstention.'
        )
    pipeline = Pipeline.load(settings)
    rows = tradeoffs(confidences(pipeline, questions), unanswerable)
    best = choose(rows, args.max_false_abstention)
    console = Console()
    table = Table(title=f"abstention trade-off on {len(questions)} questions")
    for header in ("threshold", "abstention recall", "false abstention", "abstention F1"):
        table.add_column(header, justify="right")
    for r in rows:
        mark = " <-" if r is best else ""
        table.add_row(
            f"{r.threshold:.2f}{mark}", *(_fmt(v) for v in (r.recall, r.false_abstention, r.f1))
        )
    console.print(table)
    if args.dry_run:
        console.print(f"best threshold {best.threshold:.2f} (not saved: --dry-run)")
        return 0
    record = {
        "abstain_threshold": best.threshold,
        "answerer": "extractive",
        "questions": str(args.questions),
        "n_questions": len(questions),
        "n_unanswerable": sum(unanswerable),
        "max_false_abstention": args.max_false_abstention,
        "chosen": best.__dict__,
        "table": [r.__dict__ for r in rows],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = Path(settings.index_dir) / CALIBRATION_FILE
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    console.print(
        f"saved abstain_threshold {best.threshold:.2f} to {path}; qa ask / serve / eval use it"
    )
    return 0


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
