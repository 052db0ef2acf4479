"""1-client POST /ask latency of two `qa serve`s side by side: this checkout's and another's.

On a shared machine the load changes from one minute to the next, so two runs one after the
other compare the load as much as the code. Here both servers run on the same index at once,
and every request body goes to both, back to back, in alternating order: both see the same
load. A third of the questions are new (a unique tail: no cache helps), as in bench_http.py.

    .venv/bin/python bench/bench_ab.py --baseline /work/main/.venv/bin/qa [--requests 600]

Writes bench/out/ab.json: client-seen p50/p95/p99 per server, the server's own time
(`timings_ms`: total, retrieve, answer) and the p50 ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import QUESTIONS, ROOT, cpu_model, request_mix, stop, time_to_ready

OUT = ROOT / "bench" / "out" / "ab.json"


def percentiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(q[49], 2), "p95": round(q[94], 2), "p99": round(q[98], 2)}


def run(requests: int, baseline: Path) -> dict[str, Any]:
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    questions = [q for q in questions if q.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-ab-"))
    log = tmp / "serve.log"
    load_before = os.getloadavg()[0]
    _, proc, _ = time_to_ready(tmp / "index", log)  # builds the index (and the export)
    stop(proc)
    targets = {"baseline": baseline, "this": None}
    procs, clients = [], {}
    seen: dict[str, dict[str, list[float]]] = {
        name: {"client": [], "total": [], "retrieve": [], "answer": []} for name in targets
    }
    try:
        for name, qa in targets.items():
            _, proc, url = time_to_ready(tmp / "index", log, qa=qa)
            procs.append(proc)
            clients[name] = httpx.Client(base_url=url, timeout=60)
        for body in request_mix(questions, 200, unseen=0, malformed=0):  # warm-up
            for client in clients.values():
                client.post("/ask", **body).raise_for_status()
        names = list(targets)
        for i, body in enumerate(request_mix(questions, requests, unseen=1 / 3, malformed=0)):
            for name in names if i % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                r = clients[name].post("/ask", **body)
                ms = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                timings = r.json()["timings_ms"]
                seen[name]["client"].append(ms)
                for key in ("total", "retrieve", "answer"):
                    seen[name][key].append(timings[key])
    finally:
        for client in clients.values():
            client.close()
        for proc in procs:
            stop(proc)
    shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "baseline": str(baseline),
        "requests_each": requests,
    }
    for name, values in seen.items():
        result[name] = {key: percentiles(v) for key, v in values.items()}
    result["p50_ratio_baseline_over_this"] = round(
        result["baseline"]["client"]["p50"] / result["this"]["client"]["p50"], 2
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other `qa` executable")
    parser.add_argument("--requests", type=int, default=600, help="requests to each server")
    args = parser.parse_args()
    result = run(args.requests, args.baseline)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    load = result["load_average_1min"]
    print(f"{result['cpu_model']}; load average {load['before']:.1f} -> {load['after']:.1f}")
    for name in ("baseline", "this"):
        r = result[name]
        print(f"{name:>8}: client p50/p95/p99 {r['client']['p50']} / {r['client']['p95']} / "
              f"{r['client']['p99']} ms; server total p50 {r['total']['p50']} ms (retrieve "
              f"{r['retrieve']['p50']}, answer {r['answer']['p50']})")  # fmt: skip
    print(f"p50 baseline / this: {result['p50_ratio_baseline_over_this']}")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
