"""Start-up and memory: `qa serve` start to /readyz 200 on the demo corpus with an existing
index, its RSS, the first /ask after it, and where the time goes (imports, model, store).

    .venv/bin/python bench/startup.py [--runs 3] [--baseline OTHER_CHECKOUT/.venv/bin/qa]

Each run starts a fresh `qa serve` and times it to ready, then one POST /ask of a demo question
(the first request: what a lazy start-up would shift onto it) and one of another question.
`--baseline` starts another `qa` executable (another checkout's venv) on the same index in
the same run, alternating with this one, so both see the same machine load. The phases run in
a child process of this environment, in the order `qa serve` does them
(`qa.server.run.serve`, then the loading of `qa.server.run.load_in_background`). Writes
bench/out/startup.json.

A start at a million chunks (the index on disk memory-mapped, RSS by mapping) is `scale.py
--serve`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, Run, clean_env, demo_questions, table
from httpload import memory_mb, stop, time_to_ready

PHASES = """
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
from qa.config import load_settings
settings = load_settings(corpus_dir=sys.argv[1], index_dir=sys.argv[2], _env_file=None)
mark("qa.config + Settings")
from qa.server.run import import_native_libraries, single_threaded_kernels
import_native_libraries(settings); mark("main thread: faiss, then onnxruntime or torch + s-t")
import uvicorn, fastapi; mark("import uvicorn + fastapi")
from qa.server.app import create_app
app = create_app(settings); mark("qa.server.app + create_app")
from qa.embedding.models import embedder_for, resolve_backend
embedder_for(resolve_backend(settings)[0]).dim; mark("embedding backend chosen, model loaded")
from qa.pipeline import Pipeline
pipeline = Pipeline.load(settings); mark("Pipeline.load: the rest (store: FAISS, BM25)")
pipeline.answerer(); mark("default answerer")
from qa.server.state import app_state
app_state(app).ready(pipeline); single_threaded_kernels(); mark("ready (counts, threads)")
pipeline.ask(sys.argv[3]); mark("first ask (in process)")
pipeline.ask(sys.argv[4]); mark("second ask, another question")
heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
print(json.dumps({b: round((y - x) * 1000, 1) for (_, x), (b, y) in zip(marks, marks[1:])}))
print(json.dumps(heavy))
"""


def phases(index_dir: Path, questions: list[str]) -> tuple[dict[str, float], list[str]]:
    """Milliseconds per start-up step in a fresh process, and the heavy modules it imported."""
    env = clean_env()
    out = subprocess.run(
        [sys.executable, "-c", PHASES, str(ROOT / "corpus"), str(index_dir), *questions[:2]],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])


def ask_ms(client: httpx.Client, question: str) -> tuple[float, float]:
    """Client-seen milliseconds of one POST /ask, and the server's own `timings_ms.total`."""
    t0 = time.perf_counter()
    r = client.post("/ask", json={"question": question})
    ms = (time.perf_counter() - t0) * 1000
    r.raise_for_status()
    return round(ms, 1), round(r.json()["timings_ms"]["total"], 1)


def one_start(index_dir: Path, log: Path, qa: Path | None, questions: list[str]) -> dict[str, Any]:
    seconds, proc, url = time_to_ready(index_dir, log, qa=qa)
    try:
        rss = memory_mb(proc.pid)["VmRSS"]
        with httpx.Client(base_url=url, timeout=120) as client:
            first, first_server = ask_ms(client, questions[0])
            second, second_server = ask_ms(client, questions[1])
    finally:
        stop(proc)
    return {
        "ready_s": round(seconds, 2),
        "rss_at_ready_mb": rss,
        "first_ask_ms": first,
        "first_ask_server_ms": first_server,
        "second_ask_ms": second,
        "second_ask_server_ms": second_server,
    }


def summary(starts: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("ready_s", "first_ask_ms", "second_ask_ms", "rss_at_ready_mb")
    medians = {f"{k}_median": statistics.median(s[k] for s in starts) for k in keys}
    return {**medians, "runs": starts}


def run(runs: int, baseline: Path | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-startup-"))
    log = tmp / "serve.log"
    questions = demo_questions()
    _, proc, _ = time_to_ready(tmp / "index", log)  # builds the index (and the ONNX export)
    stop(proc)
    targets: dict[str, Path | None] = {"this": None}
    if baseline is not None:
        targets = {"baseline": baseline, "this": None}
    starts: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for _ in range(runs):
        for name, qa in targets.items():  # alternating: both see the same load
            starts[name].append(one_start(tmp / "index", log, qa, questions))
            print(f"{name}: {starts[name][-1]}", flush=True)
    breakdown, heavy = phases(tmp / "index", questions)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "baseline": str(baseline) if baseline else None,
        **{name: summary(s) for name, s in starts.items()},
        "phases_ms": breakdown,
        "heavy_modules_imported": heavy,
    }


def tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in ("baseline", "this"):
        if result.get(name):
            r = result[name]
            rows.append([
                "this checkout" if name == "this" else f"baseline ({result['baseline']})",
                ", ".join(str(s["ready_s"]) for s in r["runs"]), r["ready_s_median"],
                r["rss_at_ready_mb_median"], r["first_ask_ms_median"], r["second_ask_ms_median"],
            ])  # fmt: skip
    starts = table(
        "`qa serve` on the demo corpus, index present: start to /readyz 200",
        ["qa", "ready s (each run)", "median s", "RSS at ready MB", "first /ask ms",
         "second /ask ms"],
        rows,
        "The first /ask embeds the sentences of passages the answerer has not seen yet.",
    )  # fmt: skip
    phases = table(
        "Where a start goes, in a fresh process (ms)",
        ["step", "ms"],
        [[name, round(ms)] for name, ms in result["phases_ms"].items()],
        "Heavy modules imported: " + (", ".join(result["heavy_modules_imported"]) or "none"),
    )
    return [starts, phases]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another `qa` executable to compare with")
    args = parser.parse_args()
    bench = Run("startup")
    result = run(args.runs, args.baseline)
    bench.write(result, tables(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
