"""Regression gates of `qa eval`: `--min METRIC=VALUE` / `--max METRIC=VALUE` on report paths.

A path is dotted into the report dict, e.g. `answers.contains_gold`, `retrieval.hit@5`,
`latency_ms.p95`, `kinds.unanswerable_answered`, `by_type.unanswerable.abstention.recall`. A
metric that was not measured (null) fails its gate; an unknown path is a ConfigError listing the
metric paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qa.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from qa.evaluation.scoring import Run


def parse_pairs(items: Sequence[str], what: str) -> list[tuple[str, str]]:
    """KEY=VALUE strings as pairs; ConfigError on a malformed item."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{what} {item!r} is not KEY=VALUE, e.g. {what} answers.f1=0.5.")
        pairs.append((key.strip(), value.strip()))
    return pairs


def lookup(report: dict[str, Any], path: str) -> float | None:
    """The metric at a dotted path such as `answers.f1` or `retrieval.hit@5`."""
    node: Any = report
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            from qa.evaluation.report import metric_paths

            raise ConfigError(
                f"Unknown metric {path!r}. Metrics: {', '.join(metric_paths(report))}."
            )
        node = node[part]
    if node is not None and not isinstance(node, (int, float)):
        raise ConfigError(f"{path!r} is a group, not a metric; add a key, e.g. {path}.p50.")
    return node


def parse_gates(minimum: Sequence[str], maximum: Sequence[str]) -> list[tuple[str, float, str]]:
    """(path, limit, "min"|"max") per gate, checked before the run so a typo fails fast."""
    gates = []
    for items, kind in ((minimum, "min"), (maximum, "max")):
        for path, raw in parse_pairs(items, f"--{kind}"):
            try:
                gates.append((path, float(raw), kind))
            except ValueError:
                raise ConfigError(f"--{kind} {path}={raw}: {raw!r} is not a number.") from None
    return gates


def check_gates(
    runs: Sequence[Run], gates: Sequence[tuple[str, float, str]], *, console: Console
) -> bool:
    """Print each gate's outcome; True when all pass on every variant."""
    ok = True
    for path, limit, kind in gates:
        for run in runs:
            value = lookup(run.report, path)
            passed = value is not None and (value >= limit if kind == "min" else value <= limit)
            ok &= passed
            shown = "not measured" if value is None else f"{value:.4f}"
            where = f" [{run.label}]" if len(runs) > 1 else ""
            sign = ">=" if kind == "min" else "<="
            status = "[green]pass[/]" if passed else "[red]FAIL[/]"
            console.print(f"gate {path}{where}: {shown} {sign} {limit:g} {status}")
    return ok
