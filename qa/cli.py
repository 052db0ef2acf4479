"""`qa` command line: index, search, ask, chat, answerers, serve, mcp, eval, migrate.

Thin: parse options into Settings, call the pipeline, format the result. Every Settings field
is also an option (`--chunk-tokens` <-> `chunk_tokens` <-> `QA_CHUNK_TOKENS`). QAError becomes a
one-line message and exit status 1; nothing else is caught.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qa.config import Settings, load_settings
from qa.errors import QAError

if TYPE_CHECKING:
    from qa.pipeline import Pipeline
    from qa.types import Answer, Candidate, Passage, Turn

# Short spellings the issues promise, for the settings users type most.
_ALIASES = {"corpus_dir": ["--corpus"], "index_dir": ["--index"], "top_k": ["-k"]}


def _settings_parent(exclude: Sequence[str] = ()) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("settings (each also QA_<NAME> in the environment)")
    for name, field in Settings.model_fields.items():
        if name in exclude:
            continue
        flags = [*_ALIASES.get(name, []), "--" + name.replace("_", "-")]
        default = field.default
        shown = "unset" if default is None else default
        group.add_argument(
            *flags, dest=name, default=None, metavar=name.upper(), help=f"(default: {shown})"
        )
    return parent


def _settings(args: argparse.Namespace) -> Settings:
    values = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(**values)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every `qa` command."""
    parser = argparse.ArgumentParser(
        prog="qa",
        description="Ask questions about a folder of documents; every answer cites its source.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _settings_parent()

    p = sub.add_parser("index", parents=[common], help="build or update the index from a corpus")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", parents=[common], help="show the passages for a question")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the passages as JSON")
    p.add_argument(
        "--explain",
        action="store_true",
        help="show every candidate: BM25 and dense rank/score, fused and rerank score, fate",
    )
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", parents=[common], help="answer a question with citations")
    p.add_argument("question")
    p.add_argument("--history-file", type=Path, help="JSON list of earlier turns")
    p.add_argument("--json", action="store_true", help="print the Answer as JSON")
    p.add_argument(
        "--explain", action="store_true", help="add every retrieval candidate with its scores"
    )
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", parents=[common], help="an interactive conversation")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("answerers", parents=[common], help="list the available answerers")
    p.set_defaults(func=cmd_answerers)

    p = sub.add_parser("serve", parents=[common], help="run the chat page and HTTP API")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "mcp", parents=[common], help="run an MCP server on stdio (search, ask, get_document)"
    )
    p.set_defaults(func=cmd_mcp)

    p = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy a FAISS index folder into PostgreSQL (--database-url), without re-embedding",
    )
    p.add_argument("source", type=Path, metavar="INDEX_DIR", help="the FAISS index folder")
    p.set_defaults(func=cmd_migrate)

    from qa.evaluation import calibrate

    p = sub.add_parser(
        "calibrate",
        parents=[common],
        help="fit the abstention threshold on labelled questions and save it in the index",
    )
    calibrate.add_arguments(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "train-verifier",
        add_help=False,  # its own options: `qa train-verifier --help`
        help="train the answer verifier (defaults: rebuild the shipped one from public data)",
    )
    p.set_defaults(func=lambda _: 0)  # main() hands its arguments to qa.training.run

    from qa.evaluation import run as qa_eval

    p = sub.add_parser(
        "eval",
        # A parser of its own: "resolve" edits the parent's actions, which others share.
        parents=[_settings_parent()],
        help="evaluate answers on a question set",
        conflict_handler="resolve",
    )
    qa_eval.add_arguments(p)
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `qa` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-verifier"]:  # its own parser (argparse cannot pass "--x" through)
        from qa.training.run import main as train_main  # torch and transformers: only here

        return train_main(argv[1:])
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    if args.command in ("index", "serve"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # faiss-cpu's wheel is one library that picks its SIMD kernels at run time (dynamic
    # dispatch: faiss.SIMDConfig.get_level_name() says AVX2 on an AVX2 CPU), yet its loader
    # logs at INFO that an AVX2 module is missing: noise that reads like a fault.
    if args.verbose < 2:
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except QAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- commands ---------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    from qa.embedding.models import embedder_for, resolve_backend
    from qa.ingest.build import build_index

    settings, _ = resolve_backend(_settings(args))
    embedder = embedder_for(settings)
    report = build_index(settings, embedder=embedder, rebuild=args.rebuild, progress=True)
    print(
        f"Indexed {report.n_documents} documents, {report.n_chunks} chunks into "
        f"{_location(settings)} in {report.seconds:.1f}s: {report.added} added, "
        f"{report.changed} changed, {report.removed} removed, {report.unchanged} unchanged "
        f"({report.n_embedded} chunks embedded)."
    )
    for skipped in report.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    return 0


def _pipeline(args: argparse.Namespace) -> Pipeline:
    from qa.pipeline import Pipeline

    return Pipeline.load(_settings(args))


def cmd_search(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    retrieval = pipeline.explain(args.question)
    if args.json:
        out = retrieval.to_dict(args.question, explain=args.explain)
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    _print_passages(retrieval.passages)
    if args.explain:
        _print_candidates(retrieval.candidates)
    return 0


def _print_candidates(candidates: Sequence[Candidate]) -> None:
    from rich.console import Console
    from rich.table import Table

    def num(x: float | None, digits: int = 3) -> str:
        return "-" if x is None else f"{x:.{digits}f}"

    table = Table(title="Retrieval candidates (best fused first)")
    for name in ("rank", "chunk", "dense rank", "cosine", "bm25 rank", "bm25", "fused", "rerank"):
        table.add_column(name, justify="right")
    table.add_column("status")
    for c in candidates:
        table.add_row(
            str(c.rank or "-"),
            c.chunk.id,
            str(c.dense_rank or "-"),
            num(c.dense_score),
            str(c.bm25_rank or "-"),
            num(c.bm25_score, 2),
            num(c.fused_score),
            num(c.rerank_score),
            c.status,
        )
    Console().print(table)


def _print_passages(passages: Sequence[Passage]) -> None:
    from rich.console import Console
    from rich.panel import Panel

    console = Console()
    for p in passages:
        c = p.chunk
        page = f", page {c.page}" if c.page is not None else ""
        title = f"[{p.rank}] {c.title}  score {p.score:.3f}  chars {c.start}-{c.end}{page}"
        console.print(Panel(c.text, title=title, title_align="left", expand=True))


def _read_history(path: Path | None) -> tuple[Turn, ...]:
    from qa.types import Turn

    if path is None:
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise QAError(f"Cannot read history file {path}: {exc}") from None
    if not isinstance(data, list):
        raise QAError(f"History file {path} must hold a JSON list of turns.")
    turns = []
    for item in data:
        if isinstance(item, str):
            turns.append(Turn(role="user", content=item))
        elif (
            isinstance(item, dict)
            and item.get("role") in ("user", "assistant")
            and isinstance(item.get("content"), str)
        ):
            turns.append(Turn(role=item["role"], content=item["content"]))
        else:
            raise QAError(
                f"History file {path}: each turn must be a string or "
                '{"role": "user"|"assistant", "content": str}, not ' + json.dumps(item)[:80]
            )
    return tuple(turns)


def cmd_ask(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    answer = pipeline.ask(
        args.question, history=_read_history(args.history_file), explain=args.explain
    )
    if args.explain and not args.json:
        _print_candidates(answer.candidates)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_answer(answer)
    return 0


CLOSEST_LABEL = "Closest passage found — it may not answer your question"


def _print_answer(answer: Answer) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    if answer.standalone_question and answer.standalone_question != answer.question:
        console.print(f"[dim](searched for: {escape(answer.standalone_question)})[/dim]")
    if answer.kind == "closest":
        console.print(f"[bold yellow]{CLOSEST_LABEL}[/bold yellow]")
    style = {"answered": "bold", "closest": "default", "abstained": "yellow"}[answer.kind]
    console.print(f"[{style}]{escape(answer.answer)}[/{style}]")
    if answer.abstained and answer.abstain_reason:
        console.print(f"[dim]{escape(answer.abstain_reason)}[/dim]")
    if answer.short_answer:
        console.print(f"[green]Short answer:[/green] {escape(answer.short_answer)}")
    if answer.citations:
        console.print("\n[bold]Sources[/bold]")
    for c in answer.citations:
        page = f", page {c.page}" if c.page is not None else ""
        mark = "" if c.supported else " [red](unsupported)[/red]"
        console.print(f"[{c.n}] {escape(c.title)}{page}, chars {c.start}-{c.end}{mark}")
        console.print(f'    [italic]"{escape(c.quote)}"[/italic]')
    total = dict(answer.timings_ms).get("total", 0.0)
    known = answer.confidence is not None and not answer.abstained
    sure = f" · {answer.confidence:.0%} confident" if known else ""
    console.print(f"[dim]{answer.answerer}{sure} · {total:.0f} ms[/dim]")


def cmd_chat(args: argparse.Namespace) -> int:
    from qa.types import Turn

    pipeline = _pipeline(args)
    history: list[Turn] = []
    print("Ask about the documents. Empty line or Ctrl-D to quit; /new starts over.")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            return 0
        if question == "/new":
            history.clear()
            print("(new conversation)")
            continue
        try:
            answer = pipeline.ask(question, history=history)
        except QAError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        _print_answer(answer)
        history += [Turn("user", question), Turn("assistant", answer.answer)]


def cmd_answerers(args: argparse.Namespace) -> int:
    from qa.answering.registry import available_answerers

    settings = _settings(args)
    for name, description in sorted(available_answerers().items()):
        default = " (default)" if name == settings.answerer else ""
        print(f"{name}{default}: {description}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from qa.server.run import serve

    serve(_settings(args))
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from qa.server.mcp_server import serve_stdio

    serve_stdio(_settings(args))
    return 0


def _location(settings: Settings) -> str:
    """Where the index lives, for messages (never a database password)."""
    if settings.store == "postgres" and settings.database_url is not None:
        from qa.stores.postgres.schema import describe

        return f"{describe(settings.database_url)} (schema {settings.pg_schema})"
    return f"{settings.index_dir}/"


def cmd_migrate(args: argparse.Namespace) -> int:
    from qa.stores.postgres.sync import copy_faiss_index

    settings = _settings(args)
    n_docs, n_chunks = copy_faiss_index(settings, args.source)
    target = _location(settings.model_copy(update={"store": "postgres"}))
    print(f"Copied {n_docs} documents, {n_chunks} chunks from {args.source}/ into {target}.")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from qa.evaluation import calibrate

    return calibrate.run(args, _settings(args))


def cmd_eval(args: argparse.Namespace) -> int:
    from qa.evaluation import run as qa_eval

    return qa_eval.run(args)


if __name__ == "__main__":
    sys.exit(main())
