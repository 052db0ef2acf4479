"""New questions on a corpus bigger than the demo, with and without sentence warm-up.

On the demo every passage's sentences are embedded after the first few questions, so /ask
benchmarks there time a cache. On a corpus of a few hundred documents nearly every new
question retrieves a passage no earlier one quoted, and the extractive answerer embedded its
sentences first. This runs the real `qa serve` on DATASET's corpus.jsonl three times: with
`--warm-sentences 0`, with the default (qa/server/warmup.py), and with the default again
(a restart, which reads the sentence vectors the second run left on disk); each is asked the
same questions, one at a time:
- "during": the first questions, right after /readyz turns 200 (warm-up is running then);
- "after": the next ones, once /readyz says warm-up is done (at once when it is off).
Reports p50/p99 of each phase (client and the server's own Server-Timing total), how long
warm-up took and how many sentences it embedded. Writes bench/out/warmup.json.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_warmup.py ../shared/eval/clapnq-dev-a \
        [--during 20] [--after 100]
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
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import OUT, cpu_model, stop, time_to_ready

from qa.server.timing import parse as parse_server_timing

OUT_FILE = OUT.with_name("warmup.json")


def ask_all(url: str, questions: list[str]) -> dict[str, Any]:
    """Ask each question once, one at a time: client and server-side latency."""
    client_ms, server_ms = [], []
    with httpx.Client(timeout=120) as client:
        for q in questions:
            t0 = time.perf_counter()
            reply = client.post(url + "/ask", json={"question": q})
            client_ms.append((time.perf_counter() - t0) * 1000)
            reply.raise_for_status()
            server_ms.append(parse_server_timing(reply.headers["server-timing"])["total"])
    return {
        "questions": len(questions),
        "p50_ms": round(statistics.median(client_ms), 1),
        "p99_ms": round(_p99(client_ms), 1),
        "server_p50_ms": round(statistics.median(server_ms), 1),
        "max_ms": round(max(client_ms), 1),
    }


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def serve_and_ask(
    corpus: Path, index: Path, log: Path, during: list[str], after: list[str], run: str
) -> dict[str, Any]:
    warm = run != "off"
    extra = ["--corpus", str(corpus)] + ([] if warm else ["--warm-sentences", "0"])
    ready_s, proc, url = time_to_ready(index, log, extra=extra)
    try:
        t_ready = time.perf_counter()
        first = ask_all(url, during)
        with httpx.Client(timeout=30) as client:
            while client.get(url + "/readyz").json().get("warming_sentences"):
                time.sleep(0.5)
            ready = client.get(url + "/readyz").json()
        warm_s = time.perf_counter() - t_ready
        return {
            "run": run,
            "ready_s": round(ready_s, 2),
            "warm_up_done_s": round(warm_s, 1) if warm else None,
            "warmed_sentences": ready.get("warmed_sentences"),
            "during": first,
            "after": ask_all(url, after),
        }
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="a folder with corpus.jsonl, questions.jsonl")
    parser.add_argument("--during", type=int, default=20, help="questions asked during warm-up")
    parser.add_argument("--after", type=int, default=100, help="questions asked after it")
    parser.add_argument("--out", type=Path, default=OUT_FILE)
    args = parser.parse_args()

    lines = (args.dataset / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    during = questions[: args.during]
    after = questions[args.during : args.during + args.after]
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-warmup-"))
    corpus, index, log = tmp / "corpus", tmp / "index", tmp / "serve.log"
    corpus.mkdir()
    shutil.copy(args.dataset / "corpus.jsonl", corpus / "corpus.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    t0 = time.perf_counter()
    qa = str(Path(sys.executable).parent / "qa")
    cmd = [qa, "index", "--corpus", str(corpus), "--index", str(index)]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    index_s = time.perf_counter() - t0
    print(f"indexed {args.dataset} in {index_s:.1f} s", flush=True)
    load_before = os.getloadavg()[0]
    runs = []
    for run in ("off", "on", "restart"):
        runs.append(serve_and_ask(corpus, index, log, during, after, run))
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "dataset": str(args.dataset),
        "cpu_model": cpu_model(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "index_s": round(index_s, 1),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
