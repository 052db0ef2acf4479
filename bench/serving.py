"""Serving: a real `qa serve` on the demo corpus, start-up to /readyz, then POST /ask under load.

    .venv/bin/python bench/serving.py [--requests 2000] [--clients 1 8 32] [--rates 100 150]
        [--client raw httpx] [--serve-args "--queue-limit 8"] [--qa OTHER_QA]

The server runs in a subprocess on a free loopback port (extractive answerer, an index built in
a temporary folder) and is warmed up with 200 requests. Each level then sends `--requests`
POST /ask: a third of the questions never asked before (a demo question with a unique tail, so
no cache helps), a tenth malformed bodies (each must get 422), the rest demo questions the
server has seen. Closed-loop levels (`--clients`) keep N clients each on its own keep-alive
connection; open-loop levels (`--rates`) start requests at Poisson times, as people arrive.
Latency percentiles are over the answered requests; 503s with Retry-After are shed, anything
else unexpected is an error. Writes bench/out/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import Run, demo_questions, table
from httpload import load, memory_mb, stop, time_to_ready


def run(
    requests: int,
    clients: list[int],
    *,
    unseen: float = 1 / 3,
    malformed: float = 0.1,
    qa: Path | None = None,
    extra: Sequence[str] = (),
    client_kinds: Sequence[str] = ("raw",),
    rates: Sequence[float] = (),
) -> dict[str, Any]:
    """Start-up times and /ask load at each level (with each load generator in
    `client_kinds`), against a fresh demo index."""
    questions = demo_questions()
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-serving-"))
    log = tmp / "serve.log"
    cold, proc, _ = time_to_ready(tmp / "index", log, qa=qa, extra=extra)  # builds it first
    stop(proc)
    print(f"ready after building the index: {cold:.2f} s", flush=True)
    warm, proc, url = time_to_ready(tmp / "index", log, qa=qa, extra=extra)
    print(f"ready with the index: {warm:.2f} s", flush=True)
    try:
        memory = {"ready": memory_mb(proc.pid)}
        asyncio.run(load(url, questions, 4, 200))  # warm-up, not measured
        levels = []
        for kind in client_kinds:
            for n in clients:
                levels.append(
                    asyncio.run(
                        load(url, questions, n, requests, unseen=unseen, malformed=malformed,
                             client=kind)
                    )
                )  # fmt: skip
                print(f"{n} clients ({kind}) done", flush=True)
        for rate in rates:
            levels.append(
                asyncio.run(
                    load(url, questions, 0, requests, unseen=unseen, malformed=malformed,
                         rate=rate)
                )
            )  # fmt: skip
            print(f"open loop at {rate:g}/s done", flush=True)
        memory["after_load"] = memory_mb(proc.pid)
    finally:
        stop(proc)
    shutil.rmtree(tmp, ignore_errors=True)  # kept (with serve.log) when something failed
    return {
        "qa": str(qa or Path(sys.executable).parent / "qa"),
        "answerer": "extractive",
        "serve_args": list(extra),
        "corpus": "corpus/ (demo)",
        "questions": len(questions),
        "serve_to_ready_s": {"existing_index": round(warm, 2), "building_index": round(cold, 2)},
        "memory_mb": memory,
        "ask": levels,
    }


def tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    ready, mem = result["serve_to_ready_s"], result["memory_mb"]
    start = table(
        "Start-up and memory of the served demo",
        ["`qa serve` to /readyz 200, index present", "building the index first",
         "RSS at ready", "RSS after the load (peak)"],
        [[f"{ready['existing_index']} s", f"{ready['building_index']} s",
          f"{mem['ready']['VmRSS']:.0f} MB",
          f"{mem['after_load']['VmRSS']:.0f} MB ({mem['after_load']['VmHWM']:.0f})"]],
    )  # fmt: skip
    rows = []
    for r in result["ask"]:
        n = r["clients"]
        level = f"{r['rate']:g}/s open loop" if r.get("rate") else f"{n} client{'s' * (n != 1)}"
        if r.get("client", "raw") != "raw":
            level += f" ({r['client']})"
        rows.append([
            level, r["answered"], r["rejected_422"], r["shed_503"], r["errors"],
            r["p50_ms"], r["p95_ms"], r["p99_ms"], r["throughput_rps"],
            f"{r['server_p50_ms']} / {r['server_p99_ms']}",
            f"{r['unseen_p50_ms']} / {r['unseen_p99_ms']}", r["client_cpu_share"],
        ])  # fmt: skip
    ask = table(
        f"POST /ask, {result['ask'][0]['requests']} requests a level (a third new, a tenth "
        "malformed); ms",
        ["level", "answered", "422", "shed", "errors", "p50", "p95", "p99", "answered/s",
         "server p50 / p99", "new question p50 / p99", "client CPU (cores)"],
        rows,
        "server = the app's own Server-Timing total; the rest of a client's time is sockets, "
        "the event loop and the load generator, which shares the machine.",
    )  # fmt: skip
    return [start, ask]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per level")
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--unseen", type=float, default=1 / 3, help="share of new questions")
    parser.add_argument("--malformed", type=float, default=0.1, help="share of bad bodies (422)")
    parser.add_argument("--qa", type=Path, help="serve with this `qa` (another checkout's)")
    parser.add_argument("--serve-args", default="", help='settings for qa serve: "--queue-limit 8"')
    parser.add_argument(
        "--client",
        nargs="+",
        choices=["raw", "httpx"],
        default=["raw"],
        help="load generator(s): the light raw asyncio HTTP/1.1 client and/or httpx",
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[],
        help="also open-loop levels: requests started at these average rates (Poisson), per s",
    )
    args = parser.parse_args()
    bench = Run("serving")
    result = run(
        args.requests,
        args.clients,
        unseen=args.unseen,
        malformed=args.malformed,
        qa=args.qa,
        extra=shlex.split(args.serve_args),
        client_kinds=args.client,
        rates=args.rates,
    )
    bench.write(result, tables(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
