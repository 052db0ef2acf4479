"""Present evaluation runs: rich tables in the terminal and a self-contained HTML report.

The HTML page has no external script, style sheet or font: tables, two inline SVG plots (the
recall@k curve and a latency histogram) and every failed question with its retrieved passages.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from qa.evaluation.scoring import Run

_GROUPS = ("retrieval", "answers", "citations", "abstention", "kinds", "latency_ms")
_NOT_METRICS = ("by_type", "failures", "recall_curve", "skipped_lines", "from_feedback")
_COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777")


def metric_paths(report: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted path of a numeric (or null) metric in a report dict."""
    paths = []
    for key, value in report.items():
        if not prefix and key in _NOT_METRICS:
            continue
        if isinstance(value, dict):
            paths.extend(metric_paths(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, (int, float)):
            paths.append(prefix + key)
    return paths


def _rows(runs: Sequence[Run]) -> Iterator[tuple[str, list[float | None]]]:
    """(path, value per run) for each metric measured in at least one run."""
    for path in metric_paths(runs[0].report):
        if path.endswith(".n") or path == "n":
            continue
        values = [_get(r.report, path) for r in runs]
        if any(v is not None for v in values):
            yield path, values


def _get(report: dict[str, Any], path: str) -> float | None:
    node: Any = report
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, (int, float)) else None


def fmt(value: float | None, path: str = "") -> str:
    """A metric for display: ms with one decimal, ratios with three, null as a dash."""
    if value is None:
        return "–"
    if path.startswith("latency_ms"):
        return f"{value:.1f}"
    if path.startswith("kinds.counts."):
        return f"{value:.0f}"
    return f"{value:.3f}"


def _delta(value: float | None, base: float | None, path: str) -> str:
    if value is None or base is None:
        return ""
    if path.startswith("kinds.counts."):
        return f"{value - base:+.0f}"
    return f"{value - base:+.1f}" if path.startswith("latency_ms") else f"{value - base:+.3f}"


# Kinds of answer whose share is better lower or higher; the others (the overall mix, a
# closest passage on an answerable question, the mean confidence) are neither.
_KINDS_LOWER = ("answerable_abstained", "unanswerable_answered", "unanswerable_closest")
_KINDS_HIGHER = ("answerable_answered", "unanswerable_abstained")


def _kind(path: str) -> str | None:
    """The kind key of a `kinds.` path (`kinds.counts.closest` -> `closest`), else None."""
    return path.rpartition(".")[2] if path.startswith("kinds.") else None


def _lower_is_better(path: str) -> bool:
    return (
        path.startswith("latency_ms")
        or path.endswith("false_abstention_rate")
        or _kind(path) in _KINDS_LOWER
    )


def _change(delta: str, path: str) -> str:
    """CSS class of a delta: "better", "worse", or "" when nothing changed or neither applies."""
    if not delta or float(delta) == 0:
        return ""
    kind = _kind(path)
    if kind is not None and kind not in _KINDS_LOWER + _KINDS_HIGHER:
        return ""
    return "better" if (delta.startswith("-") == _lower_is_better(path)) else "worse"


# Per-type table: metric path -> short column header.
_TYPE_COLS = {
    "n": "n",
    "retrieval.hit@{k}": "hit@{k}",
    "retrieval.ndcg@10": "ndcg@10",
    "answers.em": "em",
    "answers.f1": "f1",
    "answers.contains_gold": "gold",
    "abstention.recall": "abst.R",
    "abstention.false_abstention_rate": "false abst.",
    "kinds.closest": "closest",
}


def _type_cols(k: int) -> dict[str, str]:
    return {c.format(k=k): h.format(k=k) for c, h in _TYPE_COLS.items()}


def print_runs(console: Console, runs: Sequence[Run], *, k: int) -> None:
    """The summary table (one column per run, deltas against the first) and per-type tables."""
    from rich.table import Table

    table = Table(title=f"qa eval: {runs[0].report['n']} questions")
    table.add_column("metric")
    for run in runs:
        table.add_column(run.label, justify="right")
    for run in runs[1:]:
        table.add_column(f"Δ {run.label}", justify="right")
    for path, values in _rows(runs):
        deltas = [_delta(v, values[0], path) for v in values[1:]]
        styles = {"better": "green", "worse": "red", "": ""}
        shown = [f"[{styles[_change(d, path)]}]{d}[/]" if _change(d, path) else d for d in deltas]
        table.add_row(path, *(fmt(v, path) for v in values), *shown)
    console.print(table)
    for run in runs:
        if not run.report["by_type"]:
            continue
        by_type = Table(title=f"by type [{run.label}]")
        cols = _type_cols(k)
        by_type.add_column("type", no_wrap=True)
        for header in cols.values():
            by_type.add_column(header, justify="right")
        for name, sub in run.report["by_type"].items():
            by_type.add_row(name, *(fmt(_get(sub, c)) if c != "n" else str(sub["n"]) for c in cols))
        console.print(by_type)
    for run in runs:
        where = f" [{run.label}]" if len(runs) > 1 else ""
        console.print(f"{len(run.report['failures'])} failed questions{where}")


# -- SVG plots --------------------------------------------------------------------------------

_W, _H, _PAD = 520, 260, 44


def recall_svg(runs: Sequence[Run]) -> str:
    """Line plot of mean recall at depth 1..100 (depths evenly spaced), one line per run."""
    curves = [(r.label, r.report.get("recall_curve") or {}) for r in runs]
    depths = list(curves[0][1])
    if not depths or all(v is None for _, c in curves for v in c.values()):
        return ""
    step = (_W - 2 * _PAD) / max(len(depths) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return _PAD + i * step, _H - _PAD - v * (_H - 2 * _PAD)

    parts = [_axes("depth k", "recall@k")]
    for j in range(6):
        _, y = xy(0, j / 5)
        parts.append(f'<text x="{_PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{j / 5:.1f}</text>')
    for i, d in enumerate(depths):
        x, _ = xy(i, 0)
        parts.append(f'<text x="{x:.1f}" y="{_H - _PAD + 16}" text-anchor="middle">{d}</text>')
    for n, (label, curve) in enumerate(curves):
        color = _COLORS[n % len(_COLORS)]
        pts = [xy(i, v) for i, v in enumerate(curve.values()) if v is not None]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{line}"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in pts)
        parts.append(_legend(n, label, color))
    return _svg("recall@k curve", parts)


def latency_svg(runs: Sequence[Run], bins: int = 20) -> str:
    """Histogram of the total time per question, runs overlaid."""
    values = [v for r in runs for v in r.latencies_ms]
    if not values:
        return ""
    top = max(values) or 1.0
    width = top / bins
    counts = [[0] * bins for _ in runs]
    for n, run in enumerate(runs):
        for v in run.latencies_ms:
            counts[n][min(int(v / width), bins - 1)] += 1
    peak = max(max(c) for c in counts) or 1
    bar = (_W - 2 * _PAD) / bins
    parts = [_axes("ms per question", "questions")]
    for n, (run, row) in enumerate(zip(runs, counts, strict=True)):
        color = _COLORS[n % len(_COLORS)]
        for i, c in enumerate(row):
            h = c / peak * (_H - 2 * _PAD)
            x = _PAD + i * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{_H - _PAD - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}"'
                f' fill="{color}" fill-opacity="{0.8 if len(runs) == 1 else 0.45}"/>'
            )
        parts.append(_legend(n, run.label, color))
    for frac in (0, 0.5, 1):
        x = _PAD + frac * (_W - 2 * _PAD)
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _PAD + 16}" text-anchor="middle">{top * frac:.0f}</text>'
        )
    parts.append(f'<text x="{_PAD - 6}" y="{_PAD + 4}" text-anchor="end">{peak}</text>')
    return _svg("latency histogram", parts)


def _axes(xlabel: str, ylabel: str) -> str:
    x0, y0, x1, y1 = _PAD, _H - _PAD, _W - _PAD, _PAD
    return (
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#555"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#555"/>'
        f'<text x="{(x0 + x1) / 2}" y="{_H - 8}" text-anchor="middle">{escape(xlabel)}</text>'
        f'<text x="12" y="{(y0 + y1) / 2}" transform="rotate(-90 12 {(y0 + y1) / 2})" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )


def _legend(n: int, label: str, color: str) -> str:
    # A row above the plot area, so it never hides data.
    x, y = _PAD + 170 * (n % 3), 14 + 14 * (n // 3)
    return (
        f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
        f'<text x="{x + 14}" y="{y}">{escape(label[:26])}</text>'
    )


def _svg(title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{escape(title)}" font-size="11" '
        f'font-family="sans-serif"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )


# -- HTML -------------------------------------------------------------------------------------

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qa eval: {{ source }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;
color:#111}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#059669}.worse{color:#dc2626}.plots{display:flex;flex-wrap:wrap;gap:1rem}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}.reason{background:#fee2e2;border-radius:4px;padding:0 4px;margin-right:4px}
.passage{margin:.3rem 0 .3rem 1rem;padding:.2rem .5rem;border-left:3px solid #ddd;
white-space:pre-wrap}
.passage.rel{border-color:#059669}.muted{color:#666}figure{margin:0}
</style></head><body>
<h1>qa eval</h1>
<p class="muted">{{ source }} · {{ runs[0].report.n }} questions · k = {{ k }}</p>
<h2>Metrics</h2>
<table><tr><th>metric</th>{% for r in runs %}<th>{{ r.label }}</th>{% endfor %}
{% for r in runs[1:] %}<th>Δ {{ r.label }}</th>{% endfor %}</tr>
{% for path, values, deltas in rows %}<tr><td>{{ path }}</td>
{% for v in values %}<td class="num">{{ v }}</td>{% endfor %}
{% for d in deltas %}<td class="num {{ change(d, path) }}">{{ d }}</td>{% endfor %}</tr>
{% endfor %}</table>
<div class="plots">
{% if recall_svg %}<figure>{{ recall_svg | safe }}<figcaption>Mean recall of the relevant
documents (or evidence) within the top k</figcaption></figure>{% endif %}
{% if latency_svg %}<figure>{{ latency_svg | safe }}<figcaption>Total time per question
(retrieve + answer)</figcaption></figure>{% endif %}</div>
{% for r in runs %}{% if r.report.by_type %}
<h2>By type{% if runs|length > 1 %} [{{ r.label }}]{% endif %}</h2>
<table><tr><th>type</th>{% for c in type_cols %}<th title="{{ c }}">{{ type_cols[c] }}</th>
{% endfor %}</tr>
{% for name, sub in r.report.by_type.items() %}<tr><td>{{ name }}</td>
{% for c in type_cols %}<td class="num">{{ cell(sub, c) }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}{% endfor %}
{% for r in runs %}{% if r.report.get('from_feedback') %}{% set fb = r.report.from_feedback %}
<h2 id="from-feedback">Questions from feedback{% if runs|length > 1 %} [{{ r.label }}]{% endif %}:
{{ fb.passed }} of {{ fb.n }} now right</h2>
<p class="muted">Made from readers' ratings (<code>qa feedback export</code>). Abstention
recall {{ fmt(fb.abstention.recall) }} · false abstention
{{ fmt(fb.abstention.false_abstention_rate) }} · answers containing the gold
{{ fmt(fb.answers.contains_gold) }}</p>
<table><tr><th>rated</th><th>question</th><th>expected</th><th>answer now</th><th>result</th>
</tr>{% for q in fb.questions %}<tr><td>{{ q.feedback_kind or
('helpful' if q.rating == 'up' else 'not helpful') }}<br><span class="muted">{{ q.created_at
}}</span></td><td>{{ q.question }}</td><td>{% if q.expected == 'abstain' %}not in the
documents{% else %}{{ q.answers|join(' | ') or 'an answer' }}{% endif %}</td>
<td>{{ q.kind or '' }}: {{ q.answer or '' }}</td><td>{% if q.passed %}right{% else %}{% for
reason in q.reasons %}<span class="reason">{{ reason }}</span>{% endfor %}{% endif %}</td></tr>
{% endfor %}</table>{% endif %}{% endfor %}
{% for r in runs %}
<h2>Failed questions{% if runs|length > 1 %} [{{ r.label }}]{% endif %}:
{{ r.report.failures|length }}</h2>
{% for f in r.report.failures %}<details><summary>
{% for reason in f.reasons %}<span class="reason">{{ reason }}</span>{% endfor %}
<b>{{ f.id }}</b> {{ f.question }}
{% if f.type %} <span class="muted">({{ f.type }})</span>{% endif %}
</summary>
<p>gold answers: {{ f.answers|join(' | ') if f.answers else '(none: should abstain)' }}<br>
{% if f.gold_ids %}gold documents: {{ f.gold_ids|join(', ') }}<br>{% endif %}
{% if f.evidence %}evidence: {{ f.evidence|join(' | ') }}<br>{% endif %}
first relevant at rank: {{ f.first_relevant_rank or 'not retrieved' }}</p>
{% if f.answer is not none %}<p>answer ({{ f.kind }}{% if f.confidence is not none %},
{{ '%.0f' % (f.confidence * 100) }}% confident{% endif %}):
{{ f.answer }}{% if f.short_answer %}<br>short answer: {{ f.short_answer }}{% endif %}
<br>cited: {{ f.citations|join(', ') if f.citations else 'nothing' }}</p>{% endif %}
{% for p in f.retrieved %}<div class="passage{{ ' rel' if p.relevant }}">[{{ p.n }}]
<span class="muted">{{ p.doc_id }} · {{ p.score }}{{ ' · relevant' if p.relevant }}</span>
{{ p.text }}</div>{% endfor %}
</details>{% endfor %}{% endfor %}
</body></html>
"""


def render_html(runs: Sequence[Run], *, source: str, k: int) -> str:
    """The self-contained HTML report of one or more runs on the same question set."""
    import jinja2

    rows = [
        (path, [fmt(v, path) for v in values], [_delta(v, values[0], path) for v in values[1:]])
        for path, values in _rows(runs)
    ]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        runs=runs,
        rows=rows,
        k=k,
        source=source,
        type_cols=_type_cols(k),
        change=_change,
        fmt=fmt,
        cell=lambda sub, c: str(sub["n"]) if c == "n" else fmt(_get(sub, c)),
        recall_svg=recall_svg(runs),
        latency_svg=latency_svg(runs),
    )
