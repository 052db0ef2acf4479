"""Start-up benchmark: `qa serve` start to /readyz 200 on the demo corpus with an existing index,
and where the time goes (imports, model load, store open), in a fresh process each run.

    .venv/bin/python bench/bench_startup.py [--runs 3]

Writes bench/out/startup.json. The phases run in a child process, in the order `qa serve`
does them (the libraries `qa.server.run.serve` imports first, then the app, then the loading
`qa.server.run.load_in_background` does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import ROOT, cpu_model, memory_mb, stop, time_to_ready

OUT = ROOT / "bench" / "out" / "startup.json"

PHASES = """
import json, os, sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
import faiss; mark("import faiss")
import torch; mark("import torch")
import sentence_transformers; mark("import sentence_transformers (transformers, sklearn)")
import uvicorn, fastapi; mark("import uvicorn + fastapi")
from qa.config import load_settings
from qa.server.app import create_app
settings = load_settings(corpus_dir=sys.argv[1], index_dir=sys.argv[2], _env_file=None)
app = create_app(settings); mark("qa.server.app + create_app")
from qa.pipeline import Pipeline
pipeline = Pipeline.load(settings); mark("Pipeline.load (model weights, store)")
pipeline.answerer(); mark("default answerer")
from qa.server.state import app_state
app_state(app).ready(pipeline); mark("ready (counts)")
print(json.dumps({b: round((y - x) * 1000, 1) for (_, x), (b, y) in zip(marks, marks[1:])}))
"""


def phases(index_dir: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env["HF_HUB_OFFLINE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", PHASES, str(ROOT / "corpus"), str(index_dir)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(runs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-startup-"))
    log = tmp / "serve.log"
    load_before = os.getloadavg()[0]
    _, proc, _ = time_to_ready(tmp / "index", log)  # builds the index
    stop(proc)
    ready, rss = [], []
    for _ in range(runs):
        seconds, proc, _ = time_to_ready(tmp / "index", log)
        rss.append(memory_mb(proc.pid)["VmRSS"])
        stop(proc)
        ready.append(round(seconds, 2))
        print(f"ready in {seconds:.2f} s", flush=True)
    breakdown = phases(tmp / "index")
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "cpu_model": cpu_model(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "ready_s": ready,
        "ready_median_s": statistics.median(ready),
        "rss_at_ready_mb": rss,
        "phases_ms": breakdown,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = run(args.runs)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    load = result["load_average_1min"]
    print(f"{result['cpu_model']}; load average {load['before']:.1f} -> {load['after']:.1f}")
    print(f"qa serve -> /readyz 200: {result['ready_s']} s, RSS {result['rss_at_ready_mb']} MB")
    for name, ms in result["phases_ms"].items():
        print(f"  {name:<55} {ms:>8.0f} ms")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
