"""`qa eval`: run a question set through the pipeline and report retrieval, answer, citation,
abstention, kind-of-answer and latency metrics (definitions in `qa.evaluation.scoring`).

    qa eval QUESTIONS.jsonl [--index DIR] [--answerer NAME] [-k N] [--json OUT] [--report OUT]
    qa eval DATASET_DIR [--retrieval-only]      # a folder with corpus.jsonl + questions.jsonl
    qa eval SET --compare answerer=extractive answerer=openai-chat
    qa eval SET --min answers.contains_gold=0.9 --min abstention.recall=0.8   # CI gates
    qa eval SET --max kinds.unanswerable_answered=0.1   # at most 10% of unanswerable answered
    qa eval --feedback [SET] --report OUT.html   # the questions made from readers' feedback

`--json` keys retrieval metrics by the literal k (`hit@5`, `recall@5`); with `--compare` it
writes `{"variants": [{"label", "overrides", ...report}, ...]}`. A failed gate exits with 1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.errors import ConfigError, QAError
from qa.evaluation.scoring import Run

if TYPE_CHECKING:
    from rich.console import Console

    from qa.config import Settings
    from qa.evaluation.questions import EvalQuestion, EvalSet
    from qa.evaluation.scoring import Outcome
    from qa.pipeline import Pipeline
    from qa.types import Passage

# Settings that change only how questions are answered; any other override needs its own index.
QUERY_TIME_FIELDS = frozenset(
    {
        "top_k", "answerer", "abstain_threshold", "context_tokens", "device",
        "embedding_batch_size", "hnsw_ef_search", "ivf_nprobe", "host", "port", "api_key",
        "max_question_chars", "max_body_bytes", "retrieval", "fusion", "fusion_weight", "rrf_k",
        "candidates", "rescore", "reranker", "rerank_candidates", "dedupe",
        "pg_keyword", "pg_pool_size", "database_replica_url",
    }
)  # fmt: skip
_BATCH = 64  # questions per encoder call in batch retrieval


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `qa eval` (Settings options such as --index/-k/--answerer included)."""
    parser.add_argument(
        "target",
        type=Path,
        metavar="QUESTIONS_OR_DATASET",
        nargs="?",
        help="a questions .jsonl file, or a folder with corpus.jsonl + questions.jsonl",
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="add the questions made from readers' feedback beside the index (qa feedback export)",
    )
    parser.add_argument(
        "--index",
        "--index-dir",
        dest="index_dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="index folder (default: index/, or index/eval-<name>/ for a dataset)",
    )
    parser.add_argument(
        "-k",
        "--top-k",
        dest="top_k",
        type=int,
        default=None,
        metavar="N",
        help="passages given to the answerer and the k of hit@k/recall@k",
    )
    parser.add_argument(
        "--answerer", dest="answerer", default=None, metavar="NAME", help="answerer name"
    )
    parser.add_argument("--retrieval-only", action="store_true", help="skip answering")
    parser.add_argument(
        "--json", dest="json_out", type=Path, metavar="OUT.json", help="write the metrics as JSON"
    )
    parser.add_argument(
        "--report",
        dest="report_out",
        type=Path,
        metavar="OUT.html",
        help="write a self-contained HTML report",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="KEY=VALUE",
        default=None,
        help="evaluate several settings side by side, e.g. top_k=3 top_k=10",
    )
    parser.add_argument(
        "--min",
        dest="gate_min",
        action="append",
        default=[],
        metavar="METRIC=V",
        help="fail (exit 1) when a metric is below V, e.g. answers.f1=0.5",
    )
    parser.add_argument(
        "--max",
        dest="gate_max",
        action="append",
        default=[],
        metavar="METRIC=V",
        help="fail (exit 1) when a metric is above V, e.g. latency_ms.p95=500",
    )


def _variants(args: argparse.Namespace) -> list[dict[str, str]]:
    from qa.config import Settings
    from qa.evaluation import gates

    if not args.compare:
        return [{}]
    if len(args.compare) < 2:
        raise ConfigError("--compare needs two or more KEY=VALUE settings, e.g. top_k=3 top_k=10.")
    variants = []
    for key, value in gates.parse_pairs(args.compare, "--compare"):
        if key not in Settings.model_fields:
            raise ConfigError(
                f"--compare {key}={value}: {key!r} is not a setting. "
                f"Settings: {', '.join(Settings.model_fields)}."
            )
        variants.append({key: value})
    return variants


def _base_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from qa.config import Settings

    return {
        n: getattr(args, n) for n in Settings.model_fields if getattr(args, n, None) is not None
    }


def _dataset_settings(folder: Path, base: dict[str, Any], variant: dict[str, str]) -> Settings:
    """Settings for a dataset folder: its own index (per index-affecting variant) and corpus."""
    from qa.config import load_settings

    corpus = folder / "corpus.jsonl"
    if not corpus.is_file():
        raise QAError(
            f"Dataset folder {folder}/ has no corpus.jsonl; it needs corpus.jsonl "
            "and questions.jsonl (one JSON object per line)."
        )
    index_dir = Path(
        base.get("index_dir") or load_settings().index_dir / f"eval-{folder.resolve().name}"
    )
    suffix = "-".join(f"{k}={v}" for k, v in sorted(variant.items()) if k not in QUERY_TIME_FIELDS)
    if suffix:
        index_dir = index_dir.with_name(f"{index_dir.name}-{suffix.replace('/', '_')}")
    # The corpus loader reads a whole folder, and the dataset folder also holds questions.jsonl:
    # index a folder that holds only (a link to) corpus.jsonl.
    staged = index_dir.with_name(index_dir.name + ".corpus")
    link = staged / "corpus.jsonl"
    staged.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() != corpus.resolve():
        link.unlink()
    if not link.exists():
        try:
            link.symlink_to(corpus.resolve())
        except OSError:
            shutil.copyfile(corpus, link)
    settings = {**base, **variant, "index_dir": index_dir, "corpus_dir": staged}
    if load_settings(**settings).store == "postgres" and "pg_schema" not in {**base, **variant}:
        # One database, one schema per dataset (and per index-affecting variant).
        settings["pg_schema"] = re.sub(r"[^a-z0-9_]", "_", index_dir.name.lower())[:63]
    return load_settings(**settings)


def _open(settings: Settings, *, dataset: bool, console: Console) -> Pipeline:
    from qa.pipeline import Pipeline

    if dataset:
        from qa.embedding.models import embedder_for, resolve_backend
        from qa.ingest.build import build_index

        settings, _ = resolve_backend(settings)
        embedder = embedder_for(settings)
        # Incremental: an unchanged corpus with the same settings re-embeds nothing.
        built = build_index(settings, embedder=embedder, progress=True)
        console.print(
            f"index {settings.index_dir}: {built.n_documents} documents, "
            f"{built.n_chunks} chunks ({built.n_embedded} embedded now)"
        )
    return Pipeline.load(settings)


def _queries(pipeline: Pipeline, questions: Sequence[EvalQuestion]) -> list[str]:
    """Retrieval queries for retrieval-only runs: follow-ups rewritten to stand alone."""
    if not any(q.history for q in questions):
        return [q.question for q in questions]
    answerer = pipeline.answerer()
    return [pipeline.standalone_question(q.question, q.history, answerer) for q in questions]


def _search_all(
    pipeline: Pipeline, queries: Sequence[str], depth: int, progress: Any, task: Any
) -> list[tuple[Passage, ...]]:
    """Ranked passages for every query, in encoder batches where the retriever offers it."""
    many = getattr(pipeline.retriever, "retrieve_many", None)
    results: list[tuple[Passage, ...]] = []
    step = _BATCH if many is not None else 1
    for i in range(0, len(queries), step):
        batch = queries[i : i + step]
        if many is not None:
            results.extend(many(batch, depth))
        else:
            results.extend(pipeline.search(q, k=depth) for q in batch)
        progress.advance(task, len(batch))
    return results


def evaluate_pipeline(
    pipeline: Pipeline, evalset: EvalSet, *, k: int, retrieval_only: bool, console: Console
) -> tuple[dict[str, Any], tuple[float, ...]]:
    """The report dict of one pipeline on a question set, and each question's total latency."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from qa.evaluation.scoring import DEEP_K, Outcome, evaluate

    questions = evalset.questions
    # Deep enough for recall@100 over documents, whose chunks share the ranking.
    depth = min(max(k, DEEP_K) * 3, max(getattr(pipeline.store, "n_chunks", 0), k))
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        answers = []
        if not retrieval_only:
            task = progress.add_task("answering", total=len(questions))
            for q in questions:
                answers.append(pipeline.ask(q.question, history=q.history))
                progress.advance(task)
            queries = [
                a.standalone_question or q.question for a, q in zip(answers, questions, strict=True)
            ]
        else:
            queries = _queries(pipeline, questions)
        task = progress.add_task("retrieving", total=len(queries))
        t0 = time.perf_counter()
        ranked = _search_all(pipeline, queries, depth, progress, task)
        per_query = (time.perf_counter() - t0) * 1000 / len(queries)
    outcomes: list[Outcome] = [
        Outcome(q, r, answers[i] if answers else None)
        for i, (q, r) in enumerate(zip(questions, ranked, strict=True))
    ]
    report = evaluate(outcomes, k=k)
    report["latency_ms"]["batch_retrieve_per_question"] = per_query
    report["skipped_lines"] = [{"line": b.line, "reason": b.reason} for b in evalset.skipped]
    totals = tuple(dict(a.timings_ms).get("total", 0.0) for a in answers)
    return report, totals


def _evalset(target: Path | None, base: dict[str, Any], *, feedback: bool) -> EvalSet:
    """The questions of `target`, plus (or only) those made from the index's feedback."""
    from qa.config import load_settings
    from qa.evaluation.questions import EvalSet, load_questions

    if target is None and not feedback:
        raise ConfigError(
            "Give a question set (QUESTIONS.jsonl or a dataset folder), or --feedback to "
            "evaluate the questions made from readers' feedback."
        )
    if not feedback:
        assert target is not None
        return load_questions(target / "questions.jsonl" if target.is_dir() else target)
    if target is not None and target.is_dir():
        raise ConfigError(
            f"--feedback reads the feedback beside --index; a dataset folder ({target}) gets "
            "an index of its own. Give a questions .jsonl file with --feedback, or none."
        )
    from qa.evaluation.feedback import feedback_evalset

    made = feedback_evalset(load_settings(**base))
    if target is None:
        return made
    given = load_questions(target)
    seen = {q.id for q in given.questions}
    extra = tuple(q for q in made.questions if q.id not in seen)
    return EvalSet(Path(f"{given.path} + {made.path}"), given.questions + extra, given.skipped)


def run(args: argparse.Namespace) -> int:
    """`qa eval`: 0 when done and every gate passed, 1 when a gate failed."""
    from rich.console import Console

    from qa.config import load_settings
    from qa.evaluation import gates
    from qa.evaluation import report as rep

    err = Console(stderr=True, soft_wrap=True)
    checks = gates.parse_gates(args.gate_min, args.gate_max)
    target: Path | None = args.target
    dataset = target is not None and target.is_dir()
    base = _base_overrides(args)
    evalset = _evalset(target, base, feedback=args.feedback)
    for bad in evalset.skipped:
        err.print(f"[yellow]skipped {evalset.path}:{bad.line}[/]: {bad.reason}")
    k = int(args.top_k or load_settings(**base).top_k)
    runs: list[Run] = []
    for variant in _variants(args):
        if target is not None and dataset:
            settings = _dataset_settings(target, base, variant)
        else:
            settings = load_settings(**{**base, **variant})
        label = " ".join(f"{k}={v}" for k, v in variant.items()) or (
            "retrieval" if args.retrieval_only else settings.answerer
        )
        err.print(f"evaluating {len(evalset.questions)} questions from {evalset.path} [{label}]")
        pipeline = _open(settings, dataset=dataset, console=err)
        report, totals = evaluate_pipeline(
            pipeline, evalset, k=k, retrieval_only=args.retrieval_only, console=err
        )
        runs.append(Run(label, dict(variant), report, totals))
    out = Console()
    rep.print_runs(out, runs, k=k)
    if args.json_out:
        payload: Any = (
            runs[0].report
            if len(runs) == 1
            else {
                "variants": [{"label": r.label, "overrides": r.overrides, **r.report} for r in runs]
            }
        )
        args.json_out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        err.print(f"wrote {args.json_out}")
    if args.report_out:
        args.report_out.write_text(rep.render_html(runs, source=str(evalset.path), k=k))
        err.print(f"wrote {args.report_out}")
    passed = gates.check_gates(runs, checks, console=err)
    return 0 if passed else 1


if __name__ == "__main__":  # pragma: no cover - `python -m qa.evaluation.run` without the full CLI
    _parser = argparse.ArgumentParser(prog="qa eval")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
