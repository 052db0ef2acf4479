"""`qa` command line: index, search, ask, chat, answerers, serve, mcp, migrate, calibrate,
feedback, train-verifier, eval.

Thin: parse options into Settings, call the pipeline, format the result. Every Settings field
is also an option (`--chunk-tokens` <-> `chunk_tokens` <-> `QA_CHUNK_TOKENS`); a command's
`--help` lists only the settings it uses (SHOWN), grouped as `SETTING_GROUPS`, and every command
still accepts the others. QAError becomes a one-line message and exit status 1; nothing else is
caught.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from qa.config import SETTING_GROUPS, Settings, load_settings
from qa.errors import QAError

if TYPE_CHECKING:
    from qa.pipeline import Pipeline
    from qa.types import Answer, Candidate, Passage, Turn

# Short spellings for the settings users type most.
_ALIASES = {"corpus_dir": ["--corpus"], "index_dir": ["--index"], "top_k": ["-k"]}

_STORE = ("store", "database_url", "pg_schema")
_LLM = ("llm_base_url", "llm_model", "llm_api_key")
# The settings each command's --help lists (grouped as SETTING_GROUPS); the rest stay
# accepted as options, QA_<NAME> variables or settings-file lines, and docs/configuration.md
# lists them all.
SHOWN: dict[str, tuple[str, ...]] = {
    "index": (
        "corpus_dir", "index_dir", "chunk_tokens", "chunk_overlap", "embedding_model",
        "embedding_backend", "embedding_cache", "index_type", *_STORE,
    ),
    "search": ("index_dir", *_STORE, "top_k", "retrieval", "fusion", "candidates", "reranker"),
    "ask": ("index_dir", *_STORE, "top_k", "retrieval", "reranker", "answerer", "verifier",
            "abstain_threshold", *_LLM),
    "chat": ("index_dir", *_STORE, "top_k", "retrieval", "answerer", *_LLM),
    "answerers": ("answerer",),
    "serve": (
        "corpus_dir", "index_dir", *_STORE, "database_replica_url", "top_k", "answerer", *_LLM,
        "host", "port", "api_key", "uploads", "max_upload_bytes", "queue_limit",
        "watch_interval",
    ),
    "mcp": ("corpus_dir", "index_dir", *_STORE, "top_k", "answerer"),
    "migrate": ("database_url", "pg_schema"),
    "calibrate": ("corpus_dir", "index_dir", "top_k", "verifier"),
    "feedback": ("index_dir", *_STORE),
    "eval": ("corpus_dir", "retrieval", "fusion", "candidates", "reranker", "verifier"),
}  # fmt: skip

# `qa <command> --help` ends with these, as `gh` and `llm` do.
EXAMPLES: dict[str, str] = {
    "index": """\
  qa index                                   # corpus/ -> index/, only changed files re-embedded
  qa index --corpus ~/notes --index ~/notes-index
  qa index --rebuild --chunk-tokens 300      # re-chunk and re-embed everything
  QA_STORE=postgres QA_DATABASE_URL=postgresql://qa@db/qa qa index""",
    "search": """\
  qa search "What must blockchain information service providers do?"
  qa search "cryptography law" -k 3 --json
  qa search "cryptography law" --explain     # every candidate with its BM25 and dense scores""",
    "ask": """\
  qa ask "When was the cryptography law passed?"
  qa ask "Who passed it?" --history-file turns.json   # turns.json: ["When was the ... passed?"]
  qa ask "When was the cryptography law passed?" --json   # the Answer JSON, as POST /ask
  qa ask "Who passed it?" --answerer openai-chat --llm-base-url http://127.0.0.1:11434/v1""",
    "chat": """\
  qa chat
  qa chat --index ~/notes-index -k 3""",
    "answerers": """\
  qa answerers            # each with its description; (default) marks the one used""",
    "serve": """\
  qa serve                                   # chat page and API on http://127.0.0.1:8000
  qa serve --port 9000 --uploads off
  QA_API_KEY=secret qa serve --host 0.0.0.0  # clients send Authorization: Bearer secret""",
    "mcp": """\
  qa mcp --index ~/notes-index               # stdio; see docs/other-tools.md for client configs""",
    "migrate": """\
  qa migrate index/ --database-url postgresql://qa@db/qa
  qa migrate index/ --database-url postgresql://qa@db/qa --pg-schema notes""",
    "calibrate": """\
  qa calibrate questions.jsonl                       # fit and save the threshold in the index
  qa calibrate questions.jsonl --dry-run --max-false-abstention 0.1
  qa calibrate --feedback                            # fit on readers' earlier feedback, show
                                                     # the effect on the later half, save""",
    "feedback": """\
  qa feedback stats                          # ratings by kind and by day
  qa feedback export feedback.jsonl          # the rated answers as a qa eval question set
  qa feedback export feedback.jsonl --index ~/notes-index""",
    "eval": """\
  qa eval bench/demo_questions.jsonl --report report.html
  qa eval my-set/ --retrieval-only                    # my-set/ holds corpus.jsonl, questions.jsonl
  qa eval questions.jsonl --compare top_k=3 top_k=10
  qa eval questions.jsonl --min answers.f1=0.5 --max latency_ms.p95=500   # a CI gate
  qa eval --feedback --report feedback.html           # the questions readers rated""",
}

_OTHERS = """\
Every other setting is an option too (--<name>), or QA_<NAME> in the environment, or
QA_<NAME>=value in .env; docs/configuration.md lists them all."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """One line per option: `-k, --top-k N` (the first long spelling only); the epilog's
    examples kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        short = [f for f in action.option_strings if not f.startswith("--")]
        first_long = [f for f in action.option_strings if f.startswith("--")][:1]
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(short + first_long) + " " + metavar


def value_hint(name: str) -> str:
    """How a setting's value is written: `N`, `DIR`, `auto|torch|...`, `true|false`."""
    annotation = Settings.model_fields[name].annotation
    if get_origin(annotation) is UnionType:  # X | None
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is Literal:
        return "|".join(str(a) for a in get_args(annotation))
    if get_origin(annotation) is tuple:
        return "A,B,..."
    for suffix, hint in (("_url", "URL"), ("_key", "KEY"), ("_dir", "DIR"), ("host", "HOST")):
        if name.endswith(suffix):
            return hint
    hints: dict[object, str] = {bool: "true|false", int: "N", float: "X", Path: "PATH"}
    return hints.get(annotation, "NAME")


def shown_default(name: str) -> str:
    """A setting's default as a user types it (`unset` for none)."""
    default: Any = Settings.model_fields[name].default
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ",".join(str(d) for d in default)
    return str(default)


def _clause(sentence: str) -> str:
    """A description as an argparse help line: no full stop, lower case unless an acronym."""
    sentence = sentence.rstrip(".")
    first = sentence.split(" ", 1)[0]
    return sentence if sum(c.isupper() for c in first) > 1 else sentence[:1].lower() + sentence[1:]


def _add_settings(
    parser: argparse.ArgumentParser, command: str, *, exclude: Sequence[str] = ()
) -> None:
    """Every Settings field as an option of `parser`; those of SHOWN[command] listed by group."""
    fields = Settings.model_fields
    shown = [
        (group, [n for n in names if n in SHOWN.get(command, ()) and n not in exclude])
        for group, names in SETTING_GROUPS.items()
    ]
    for group, names in shown:
        if not names:
            continue
        section = parser.add_argument_group(group)
        for name in names:
            about = _clause(fields[name].description or name)
            section.add_argument(
                *_flags(name),
                dest=name,
                default=None,
                metavar=value_hint(name),
                help=f"{about} (default: {shown_default(name)})",
            )
    listed = {n for _, names in shown for n in names}
    for name in fields:
        if name not in listed and name not in exclude:
            parser.add_argument(*_flags(name), dest=name, default=None, help=argparse.SUPPRESS)


def _flags(name: str) -> list[str]:
    return [*_ALIASES.get(name, []), "--" + name.replace("_", "-")]


def _command(
    sub: Any, name: str, summary: str, *, exclude: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """A subcommand whose help shows its settings by group and ends with examples."""
    epilog = f"examples:\n{EXAMPLES[name]}\n\n{_OTHERS}" if name in EXAMPLES else _OTHERS
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary[:1].upper() + summary[1:] + ".",
        epilog=epilog, formatter_class=_Formatter,
    )  # fmt: skip
    _add_settings(p, name, exclude=exclude)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    values = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(**values)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every `qa` command."""
    parser = argparse.ArgumentParser(
        prog="qa",
        description="Ask questions about a folder of documents; every answer cites its source.",
        epilog=_TOUR,
        formatter_class=_Formatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "index", "build or update the index from a corpus")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")
    p.set_defaults(func=cmd_index)

    p = _command(sub, "search", "show the passages for a question")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the passages as JSON")
    p.add_argument(
        "--explain",
        action="store_true",
        help="show every candidate: BM25 and dense rank/score, fused and rerank score, fate",
    )
    p.set_defaults(func=cmd_search)

    p = _command(sub, "ask", "answer a question with citations")
    p.add_argument("question")
    p.add_argument("--history-file", type=Path, metavar="FILE", help="JSON list of earlier turns")
    p.add_argument("--json", action="store_true", help="print the Answer as JSON")
    p.add_argument(
        "--explain", action="store_true", help="add every retrieval candidate with its scores"
    )
    p.set_defaults(func=cmd_ask)

    p = _command(sub, "chat", "an interactive conversation in the terminal")
    p.set_defaults(func=cmd_chat)

    p = _command(sub, "answerers", "list the available answerers")
    p.set_defaults(func=cmd_answerers)

    p = _command(sub, "serve", "run the chat page and HTTP API")
    p.set_defaults(func=cmd_serve)

    p = _command(sub, "mcp", "run an MCP server on stdio (search, ask, get_document)")
    p.set_defaults(func=cmd_mcp)

    p = _command(sub, "migrate", "copy a FAISS index folder into PostgreSQL, without re-embedding")
    p.add_argument("source", type=Path, metavar="INDEX_DIR", help="the FAISS index folder")
    p.set_defaults(func=cmd_migrate)

    from qa.evaluation import calibrate

    p = _command(
        sub, "calibrate", "fit the abstention threshold on labelled questions, saved in the index"
    )
    calibrate.add_arguments(p)
    p.set_defaults(func=cmd_calibrate)

    _feedback_commands(sub)

    p = sub.add_parser(
        "train-verifier",
        add_help=False,  # its own options: `qa train-verifier --help`
        help="train the answer verifier (defaults: rebuild the shipped one from public data)",
    )
    p.set_defaults(func=lambda _: 0)  # main() hands its arguments to qa.training.run

    from qa.evaluation import run as qa_eval

    # eval defines --index, -k and --answerer itself (a dataset gets its own index folder).
    p = _command(
        sub,
        "eval",
        "evaluate answers on a question set",
        exclude=("index_dir", "top_k", "answerer"),
    )
    qa_eval.add_arguments(p)
    p.set_defaults(func=cmd_eval)
    return parser


def _feedback_commands(sub: Any) -> None:
    """`qa feedback export` and `qa feedback stats`, each with the settings of `feedback`."""
    summary = "readers' feedback on answers: export it as a question set, or count it"
    epilog = f"examples:\n{EXAMPLES['feedback']}\n\n{_OTHERS}"
    p = sub.add_parser(
        "feedback", help=summary, description=summary[:1].upper() + summary[1:] + ".",
        epilog=epilog, formatter_class=_Formatter,
    )  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, about in (
        ("export", "write the rated answers as a qa eval question set (JSONL)"),
        ("stats", "count the feedback by rating and kind, and per day"),
    ):
        a = actions.add_parser(
            name, help=about, description=about[:1].upper() + about[1:] + ".",
            epilog=epilog, formatter_class=_Formatter,
        )  # fmt: skip
        if name == "export":
            a.add_argument("out", type=Path, metavar="OUT.jsonl")
        else:
            a.add_argument("--json", action="store_true", help="print the counts as JSON")
        _add_settings(a, "feedback")
        a.set_defaults(func=cmd_feedback_export if name == "export" else cmd_feedback_stats)


_TOUR = """\
examples:
  qa index                                    # index the documents in corpus/
  qa ask "When was the cryptography law passed?"
  qa serve                                    # chat page and API on http://127.0.0.1:8000
  qa <command> --help                         # the options of one command, with examples

Settings: options, QA_<NAME> environment variables or a .env file; docs/configuration.md."""


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


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from qa.evaluation.feedback import write_export

    made = write_export(_settings(args), args.out)
    unanswerable = sum(not r["answerable"] for r in made.records)
    print(f"wrote {len(made.records)} questions ({unanswerable} unanswerable) to {args.out}")
    for reason, n in made.skipped.items():
        print(f"skipped {n}: {reason}")
    return 0


def cmd_feedback_stats(args: argparse.Namespace) -> int:
    from qa.evaluation.feedback import load_feedback, stats

    counted = stats(load_feedback(_settings(args)))
    if args.json:
        print(json.dumps(counted, indent=2))
        return 0
    print(
        f"{counted['total']} rated answers: {counted['ratings'].get('up', 0)} helpful, "
        f"{counted['ratings'].get('down', 0)} not helpful; {counted['with_correction']} with a "
        f"correction, {counted['with_evidence']} with evidence"
    )
    for kind, n in sorted(counted["kinds"].items()):
        print(f"  {kind:<16} {n}")
    print(
        f"{counted['exportable']} make questions ({counted['unanswerable']} unanswerable)"
        + "".join(f"; {n} skipped: {reason}" for reason, n in counted["skipped"].items())
    )
    for day, kinds in counted["by_day"].items():
        print(f"  {day}  " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from qa.evaluation import run as qa_eval

    return qa_eval.run(args)


if __name__ == "__main__":
    sys.exit(main())
