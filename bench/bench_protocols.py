"""Protocol overhead: POST /v1/chat/completions against POST /ask, and `qa mcp` tool round-trips.

Runs the real `qa serve` in a subprocess (extractive answerer, demo corpus, an index built in a
temporary folder), then asks the same demo questions through /ask and /v1/chat/completions,
interleaved (A B B A ...) on one keep-alive connection, so both routes see the same machine
state; each request's question is made unique, so no route finds its embedding cached. Median
and p95 latency per route and the ratio of medians, plain and streamed. Then starts `qa mcp`
on the same index with the official SDK's stdio client: time to the handshake, to the first
tool result (index and models loading), and the round-trip of `search` and `ask` calls after
start-up. Writes bench/out/protocols.json.

    .venv/bin/python bench/bench_protocols.py [--rounds 60] [--mcp-calls 60]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from bench_http import stop, time_to_ready

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "bench" / "demo_questions.jsonl"
OUT = ROOT / "bench" / "out" / "protocols.json"


def summary(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=20, method="inclusive")
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 2), "p95_ms": round(q[18], 2)}


def unique(question: str, i: int, tag: str) -> str:
    """The question made unique per request, so no route finds its embedding cached."""
    return f"{question} ({tag} {i})"


def timed(
    send: Callable[[httpx.Client, str], httpx.Response], client: httpx.Client, q: str
) -> float:
    """Milliseconds for one request, which must succeed."""
    t0 = time.perf_counter()
    r = send(client, q)
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        raise SystemExit(f"{r.request.url}: {r.status_code} {r.text[:200]}")
    return ms


def http_routes(url: str, questions: list[str], rounds: int) -> dict[str, Any]:
    """/ask vs /v1/chat/completions, and /ask/stream vs the streamed chat, interleaved."""

    def chat(q: str, stream: bool) -> dict[str, Any]:
        messages = [{"role": "user", "content": q}]
        return {"model": "qa-extractive", "messages": messages, "stream": stream}

    routes: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
        "ask": lambda c, q: c.post("/ask", json={"question": q}),
        "chat": lambda c, q: c.post("/v1/chat/completions", json=chat(q, False)),
        "ask_stream": lambda c, q: c.post("/ask/stream", json={"question": q}),
        "chat_stream": lambda c, q: c.post("/v1/chat/completions", json=chat(q, True)),
    }
    times: dict[str, list[float]] = {name: [] for name in routes}
    pairs = [("ask", "chat"), ("ask_stream", "chat_stream")]
    with httpx.Client(base_url=url, timeout=60) as client:
        for i, q in enumerate(questions[:10]):  # warm-up, not measured
            for name, send in routes.items():
                timed(send, client, unique(q, i, name))
        for i in range(rounds):
            q = questions[i % len(questions)]
            for a, b in pairs:
                order = (a, b) if i % 2 == 0 else (b, a)  # A B, then B A: drift cancels out
                for name in order:
                    times[name].append(timed(routes[name], client, unique(q, i, name)))
    out: dict[str, Any] = {name: summary(ms) for name, ms in times.items()}
    for a, b in pairs:
        out[f"{b}/{a}"] = round(out[b]["median_ms"] / out[a]["median_ms"], 3)
    return out


async def mcp_calls(index_dir: Path, questions: list[str], calls: int) -> dict[str, Any]:
    """`qa mcp` start-up and the round-trip of search and ask calls after it."""
    from mcp import Client, StdioServerParameters

    args = ["-m", "qa.cli", "mcp", "--corpus", str(ROOT / "corpus"), "--index", str(index_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    params = StdioServerParameters(
        command=sys.executable, args=args, env={**env, "HF_HUB_OFFLINE": "1"}, cwd=ROOT
    )
    t0 = time.perf_counter()
    async with Client(params, read_timeout_seconds=300) as client:
        handshake = time.perf_counter() - t0
        await client.call_tool("search", {"question": questions[0], "k": 5})
        first = time.perf_counter() - t0
        times: dict[str, list[float]] = {"search": [], "ask": []}
        for i in range(calls):
            q = questions[i % len(questions)]
            search = {"question": unique(q, i, "search"), "k": 5}
            for tool, arguments in (("search", search), ("ask", {"question": unique(q, i, "ask")})):
                t1 = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                times[tool].append((time.perf_counter() - t1) * 1000)
                if result.is_error:
                    raise SystemExit(f"{tool}: {result.content}")
    return {
        "start_to_handshake_s": round(handshake, 2),
        "start_to_first_result_s": round(first, 2),
        **{f"{tool}_call": summary(ms) for tool, ms in times.items()},
    }


def run(rounds: int, mcp_rounds: int) -> dict[str, Any]:
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines()]
    questions = [q for q in questions if q.strip()]
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="qa-bench-protocols-"))
    _, proc, url = time_to_ready(tmp / "index", tmp / "serve.log")  # builds the index first
    try:
        http = http_routes(url, questions, rounds)
    finally:
        stop(proc)
    mcp = anyio.run(mcp_calls, tmp / "index", questions, mcp_rounds)
    shutil.rmtree(tmp, ignore_errors=True)  # kept (with serve.log) when something failed
    return {
        "answerer": "extractive",
        "corpus": "corpus/ (demo)",
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "http": http,
        "mcp": mcp,
    }


def print_table(result: dict[str, Any]) -> None:
    http, mcp = result["http"], result["mcp"]
    before, after = result["load_average"]["before"], result["load_average"]["after"]
    print(f"load average (1/5/15 min) before {before}, after {after}")
    print(f"{'route':<32} {'n':>4} {'median ms':>10} {'p95 ms':>8}")
    for name, label in (
        ("ask", "POST /ask"),
        ("chat", "POST /v1/chat/completions"),
        ("ask_stream", "POST /ask/stream"),
        ("chat_stream", "POST /v1/chat/completions stream"),
    ):
        r = http[name]
        print(f"{label:<32} {r['n']:>4} {r['median_ms']:>10.2f} {r['p95_ms']:>8.2f}")
    print(f"chat/ask median ratio {http['chat/ask']}, streamed {http['chat_stream/ask_stream']}")
    print(
        f"qa mcp: handshake after {mcp['start_to_handshake_s']} s, first result after "
        f"{mcp['start_to_first_result_s']} s"
    )
    for tool in ("search", "ask"):
        r = mcp[f"{tool}_call"]
        print(f"  {tool} call round-trip: median {r['median_ms']} ms, p95 {r['p95_ms']} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="questions per HTTP route")
    parser.add_argument("--mcp-calls", type=int, default=60, help="calls per MCP tool")
    args = parser.parse_args()
    result = run(args.rounds, args.mcp_calls)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
