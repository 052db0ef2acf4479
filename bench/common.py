"""What every benchmark shares: paths, the machine and its load, percentiles, the result file.

Not a benchmark itself. Each entry point (`bench/<name>.py`) starts a `Run`, measures, and
ends with `Run.write`, which saves `bench/out/<name>.json`:

    {"benchmark": name, "command": the exact command line to rerun,
     "machine": {"cpu", "cores", "flags", "memory_gb"}, "load": {"before", "after"},
     "when": ISO time, "seconds": wall time, "results": {..., "tables": [...]}}

`bench/report.py` turns each file's `results.tables` into bench/README.md's table for it.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
# Indexes, caches and exported files a benchmark keeps between runs: git-ignored, unlike
# the result files beside it.
WORK = OUT / "work"
SHARED = ROOT.parent / "shared"
SCIFACT = SHARED / "eval" / "scifact"
CLAPNQ = SHARED / "eval" / "clapnq-dev-a"
SQUAD = SHARED / "eval" / "squad2-dev-subset"
DEMO_QUESTIONS = BENCH / "demo_questions.jsonl"

# Benchmarks never download: the model and tokenizer files come from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# The CPU features that change which code runs (embedding dtypes, FAISS kernels).
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    """The CPU model, the cores this process may use, its relevant flags, and memory."""
    model, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    memory = 0.0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = round(int(line.split()[1]) / 1024**2, 1)
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "flags": [f for f in FLAGS if f in flags],
        "memory_gb": memory,
    }


def load() -> list[float]:
    """The 1-, 5- and 15-minute load averages (/proc/loadavg): other work on the machine."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def command() -> str:
    """The command line that reruns this benchmark with the same arguments."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return shlex.join([".venv/bin/python", shown, *sys.argv[1:]])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (inclusive method) rounded to 0.01, or None under two values."""
    if len(values) < 2:
        return round(values[0], 2) if values else None
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return round(cuts[max(1, min(99, round(q))) - 1], 2)


def demo_questions() -> list[str]:
    """The demo set's question texts (bench/demo_questions.jsonl), in order."""
    lines = DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [q for q in (json.loads(x)["question"] for x in lines if x.strip()) if q.strip()]


def questions(path: Path, n: int) -> list[str]:
    """`n` question texts from a questions.jsonl, repeated from the start when it has fewer."""
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    found = [q["question"] for q in lines]
    return (found * (n // max(len(found), 1) + 1))[:n]


def clean_env() -> dict[str, str]:
    """This environment without the developer's QA_* settings, for `qa` subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(HF_HUB_OFFLINE="1", QA_ENV_FILE="")
    return env


def table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = ""
) -> dict[str, Any]:
    """A table for the report: a title, column names, rows of cells, an optional note."""
    return {"title": title, "columns": list(columns), "rows": [list(r) for r in rows], "note": note}


class Run:
    """One run of a benchmark: the machine, the load before and after, the result file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.command = command()
        self.load_before = load()
        self.started = time.perf_counter()
        self.when = datetime.now(UTC).isoformat(timespec="seconds")
        print(f"{name}: load average {self.load_before[0]:.2f} before", flush=True)

    def write(self, results: dict[str, Any], tables: Sequence[dict[str, Any]]) -> Path:
        """Save bench/out/<name>.json and print its tables; returns the path."""
        doc = {
            "benchmark": self.name,
            "command": self.command,
            "machine": machine(),
            "load": {"before": self.load_before, "after": load()},
            "when": self.when,
            "seconds": round(time.perf_counter() - self.started, 1),
            "results": {**results, "tables": list(tables)},
        }
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        for t in tables:
            print(f"\n{t['title']}")
            print(" | ".join(str(c) for c in t["columns"]))
            for row in t["rows"]:
                print(" | ".join("-" if c is None else str(c) for c in row))
        print(f"\nload average {doc['load']['after'][0]:.2f} after; wrote {path.relative_to(ROOT)}")
        return path
