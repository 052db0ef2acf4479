"""Regenerate the result tables of bench/README.md from bench/out/*.json.

    .venv/bin/python bench/report.py           # rewrite the generated parts of bench/README.md
    .venv/bin/python bench/report.py --check   # exit 1 when they differ from the JSON files

Each benchmark's section of the README holds a pair of markers,
`<!-- results: NAME -->` and `<!-- end results: NAME -->`; everything between them is made
from bench/out/NAME.json (its command, machine, load and `results.tables`) and everything
outside them is written by hand. A result file without a section, or a section whose markers
are broken, is an error: the README always shows every result there is.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SECTION = re.compile(
    r"(<!-- results: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- end results: (?P=name) -->)",
    re.DOTALL,
)


class ReportError(Exception):
    """The README and the result files do not fit together; the message says how to fix it."""


def cell(value: Any) -> str:
    """One table cell: numbers as measured, nothing as a dash, pipes escaped."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(t: dict[str, Any]) -> list[str]:
    columns = [cell(c) if c != "" else " " for c in t["columns"]]  # a row-label column
    lines = [f"**{t['title']}**", "", "| " + " | ".join(columns) + " |"]
    lines.append("| " + " | ".join("---" for _ in columns) + " |")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t["rows"]]
    if t.get("note"):
        lines += ["", t["note"]]
    return lines


def flat(results: Any, prefix: str = "") -> list[list[Any]]:
    """(figure, value) rows of every number or string in a result that brings no tables."""
    if isinstance(results, dict):
        return [row for k, v in results.items() for row in flat(v, f"{prefix}{k} ")]
    if isinstance(results, list):
        if all(not isinstance(v, dict | list) for v in results):
            return [[prefix.strip(), ", ".join(cell(v) for v in results)]]
        return [row for i, v in enumerate(results) for row in flat(v, f"{prefix}{i} ")]
    return [[prefix.strip(), results]]


def describe(doc: dict[str, Any]) -> list[str]:
    """The command, machine and load of one result file, then its tables."""
    machine, load = doc.get("machine") or {}, doc.get("load") or {}
    where = "machine not recorded"
    if machine:
        flags = ", ".join(machine.get("flags") or []) or "none of AVX2/AVX-512/AMX"
        where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores ({flags})"
        if machine.get("memory_gb"):
            where += f", {machine['memory_gb']} GB"
    before, after = load.get("before"), load.get("after")
    load_text = "load not recorded"
    if before is not None and after is not None:
        load_text = f"load average {_first(before)} before, {_first(after)} after"
    lines = [f"`{doc.get('command', '(command not recorded)')}`", ""]
    took = f", {doc['seconds']:,.0f} s" if isinstance(doc.get("seconds"), int | float) else ""
    lines += [f"Machine: {where}; {load_text}{took}.", ""]
    results = doc.get("results") or {}
    tables = results.get("tables") if isinstance(results, dict) else None
    if not tables:
        rest = {k: v for k, v in results.items() if k != "tables"} if results else {}
        tables = [{"title": "Results", "columns": ["figure", "value"], "rows": flat(rest)}]
    for t in tables:
        lines += [*markdown_table(t), ""]
    return lines


def _first(load: Any) -> str:
    """The 1-minute figure of a load record (a list of three, or one number)."""
    value = load[0] if isinstance(load, list) else load
    return f"{float(value):.2f}"


def render(readme: str, out: Path) -> str:
    """The README with every section's generated part made from the files in `out`."""
    docs = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.json"))}
    names = [m.group("name") for m in SECTION.finditer(readme)]
    opened = re.findall(r"<!-- results: ([\w.-]+) -->", readme)
    if sorted(opened) != sorted(names):
        broken = sorted(set(opened) - set(names)) or sorted(opened)
        raise ReportError(f"unclosed results section(s) in the README: {', '.join(broken)}")
    missing = sorted(set(docs) - set(names))
    if missing:
        raise ReportError(
            "result files without a section in the README: "
            + ", ".join(f"{out.name}/{m}.json" for m in missing)
            + ". Add `<!-- results: NAME -->` and `<!-- end results: NAME -->` with a few "
            "lines on what it measures."
        )

    def body(match: re.Match[str]) -> str:
        name = match.group("name")
        if name in docs:
            lines = describe(docs[name])
        else:
            lines = [f"No result yet: run `.venv/bin/python bench/{name}.py`.", ""]
        return match.group(1) + "\n".join(lines) + match.group(4)

    return SECTION.sub(body, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is stale")
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    try:
        fresh = render(current, args.out)
    except ReportError as exc:
        print(f"bench/report.py: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if fresh != current:
            print(
                f"{args.readme} is stale against {args.out}/*.json: run "
                "`.venv/bin/python bench/report.py` and commit the result.",
                file=sys.stderr,
            )
            return 1
        return 0
    if fresh != current:
        args.readme.write_text(fresh, encoding="utf-8")
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
