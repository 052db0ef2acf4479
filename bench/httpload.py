"""Drive a real `qa serve` over HTTP: start it, wait for /readyz, load /ask, read its memory.

Not a benchmark itself: `serving.py`, `startup.py` and `scale.py` use it. The server is this
environment's `qa serve` (or another checkout's `qa` executable) on a free loopback port; the
load generator is a light asyncio HTTP/1.1 client (httpx on request), closed loop (N clients
that each wait for their answer) or open loop (Poisson arrivals at a rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, clean_env

from qa.server.timing import parse as parse_server_timing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    index_dir: Path,
    port: int,
    log: Path,
    *,
    qa: Path | None = None,
    extra: Sequence[str] = (),
    corpus: Path = ROOT / "corpus",
) -> subprocess.Popen[bytes]:
    """`qa serve` (this environment's, or the `qa` executable given) on `port` over `corpus`,
    plus `extra` command-line settings (e.g. `--queue-limit 8`)."""
    qa = qa or Path(sys.executable).parent / "qa"
    cmd = (
        [str(qa)]
        if qa.exists()
        else [sys.executable, "-c", "import sys; from qa.cli import main; sys.exit(main())"]
    )
    cmd += ["serve", "--corpus", str(corpus), "--index", str(index_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *extra]
    env = clean_env()
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT on a hang dumps every thread's stack to the log
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def time_to_ready(
    index_dir: Path,
    log: Path,
    *,
    qa: Path | None = None,
    extra: Sequence[str] = (),
    corpus: Path = ROOT / "corpus",
    timeout: float = 300,
) -> tuple[float, subprocess.Popen[bytes], str]:
    """Seconds from starting `qa serve` to /readyz == 200, the process, and its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = start_serve(index_dir, port, log, qa=qa, extra=extra, corpus=corpus)
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"qa serve exited with {proc.returncode}; see {log}")
                try:
                    if client.get(url + "/readyz").status_code == 200:
                        return time.perf_counter() - t0, proc, url
                except httpx.TransportError:
                    pass
                if time.perf_counter() - t0 > timeout:
                    proc.send_signal(signal.SIGABRT)
                    proc.wait(timeout=15)
                    raise SystemExit(f"qa serve not ready after {timeout:g} s; stacks in {log}")
                time.sleep(0.05)
    except BaseException:
        stop(proc)
        raise


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


MALFORMED: list[dict[str, Any]] = [  # each must be answered 422, never shed or failed
    {"json": {}},
    {"json": {"question": ""}},
    {"json": {"question": "   "}},
    {"json": {"question": 5}},
    {"content": b'{"question": "unclosed', "headers": {"content-type": "application/json"}},
]


# Marks the questions made unique by request_mix (never asked before, so nothing is cached).
UNSEEN = ", asked as number "


def request_mix(
    questions: list[str], total: int, *, unseen: float, malformed: float, tag: str = ""
) -> list[Any]:
    """`total` request bodies: a share never asked before (a unique question, so no cache
    helps; `tag` keeps them unique across runs against one server), a share malformed (each
    must get 422), the rest from the demo questions."""
    out: list[Any] = []
    n_unseen, n_bad = round(total * unseen), round(total * malformed)
    for i in range(total):
        # Spread the kinds evenly over the run (i * share crosses an integer n times).
        if (i + 1) * n_bad // total != i * n_bad // total:
            out.append(MALFORMED[i % len(MALFORMED)])
        elif (i + 1) * n_unseen // total != i * n_unseen // total:
            q = questions[i % len(questions)]
            out.append({"json": {"question": f"{q.rstrip('?')}{UNSEEN}{tag}{i}?"}})
        else:
            out.append({"json": {"question": questions[i % len(questions)]}})
    return out


# (status, lower-cased headers, body) of one response.
Reply = tuple[int, dict[str, str], bytes]


class RawConnection:
    """POSTs over one keep-alive HTTP/1.1 connection, with asyncio streams and no more parsing
    than the benchmark reads.

    The load generator shares the server's two cores: httpx spent ~3 ms of CPU per request
    here (a third of a core at 8 clients, all of one at 32), so at 32 clients it, not the
    server, set the tail. This costs a small fraction of that (`client_cpu_share`).
    """

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host, self.port = parts.host, parts.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._used = 0.0  # when the last answer was read

    async def post(self, path: str, body: dict[str, Any]) -> Reply:
        if "json" in body:
            content, kind = json.dumps(body["json"]).encode(), "application/json"
        else:
            content, kind = body["content"], body["headers"]["content-type"]
        # uvicorn closes a keep-alive connection idle for 5 s; as a browser would, do not send
        # on one that old or already closed (an open-loop level keeps spare connections idle).
        if self._streams is not None and (
            self._streams[0].at_eof() or time.perf_counter() - self._used > 4.0
        ):
            await self.close()
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(content)}\r\n\r\n"
        )
        writer.write(head.encode() + content)
        try:
            lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding") == "chunked":
                data = b""
                while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
                    data += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")
            else:
                data = await reader.readexactly(int(headers.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise httpx.RemoteProtocolError(f"connection lost: {exc!r}") from exc
        self._used = time.perf_counter()
        if headers.get("connection") == "close":
            await self.close()
        return int(lines[0].split()[1]), headers, data

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def load(
    url: str,
    questions: list[str],
    clients: int,
    total: int,
    *,
    unseen: float = 0.0,
    malformed: float = 0.0,
    client: str = "raw",
    rate: float | None = None,
) -> dict[str, Any]:
    """`total` POST /ask requests from `clients` concurrent workers, each on its own
    keep-alive connection (`client`: "raw", RawConnection, or "httpx", one AsyncClient).

    With `rate`, open loop instead: requests start at random (Poisson) times, `rate` a second
    on average, whatever the answers' speed, each on a free raw connection or a new one; as
    people arrive, not as a fixed set of clients that each wait for their last answer (a closed
    loop makes the requests in flight whatever is slowest to answer).

    Latency percentiles are over the answered (200) requests; 503s with Retry-After are shed
    (counted, not errors); a malformed request must get 422; anything else is an error.
    """
    latencies: list[float] = []
    seen_ms: list[float] = []  # the answered questions asked before (in the warm-up too)
    unseen_ms: list[float] = []  # and those never asked before
    inside: list[float] = []  # the server's own `timings_ms.total` (retrieve + answer)
    served: list[dict[str, float]] = []  # each answer's Server-Timing spans (queue, work, total)
    errors: list[str] = []
    shed = bad_ok = 0
    # New questions are new to this server: the earlier levels asked theirs under other tags.
    tag = f"{client}-{clients}-" if rate is None else f"open-{rate:g}-"
    bodies = request_mix(questions, total, unseen=unseen, malformed=malformed, tag=tag)
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as pool:

        async def one(i: int, raw: RawConnection | None) -> None:
            nonlocal shed, bad_ok
            body = bodies[i]
            expect = 422 if any(body is m for m in MALFORMED) else 200
            t0 = time.perf_counter()
            try:
                if raw is not None:
                    status, headers, data = await raw.post("/ask", body)
                else:
                    r = await pool.post("/ask", **body)
                    status, headers, data = r.status_code, dict(r.headers), r.content
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                return
            ms = (time.perf_counter() - t0) * 1000
            if status == 503 and "retry-after" in headers:
                shed += 1
            elif status != expect:
                errors.append(f"{status} (expected {expect}): {data[:120]!r}")
            elif expect == 200:
                latencies.append(ms)
                (unseen_ms if UNSEEN in body["json"]["question"] else seen_ms).append(ms)
                inside.append(json.loads(data)["timings_ms"]["total"])
                if "server-timing" in headers:  # an older `qa` (--qa) may not send it
                    served.append(parse_server_timing(headers["server-timing"]))
            else:
                bad_ok += 1

        async def worker() -> None:
            raw = RawConnection(url) if client == "raw" else None
            for i in counter:
                await one(i, raw)
            if raw is not None:
                await raw.close()

        free: list[RawConnection] = []

        async def arrival(i: int) -> None:
            raw = free.pop() if free else RawConnection(url)
            await one(i, raw)
            free.append(raw)

        async def arrivals(rate: float) -> None:
            gaps = random.Random(0)
            start, due, started = time.perf_counter(), 0.0, []
            for i in range(total):
                due += gaps.expovariate(rate)
                await asyncio.sleep(max(0.0, start + due - time.perf_counter()))
                started.append(asyncio.create_task(arrival(i)))
            await asyncio.gather(*started)
            for raw in free:
                await raw.close()

        t0, cpu0 = time.perf_counter(), time.process_time()
        if rate is None:
            await asyncio.gather(*(worker() for _ in range(clients)))
        else:
            await arrivals(rate)
        wall, client_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    q = {p: pct(latencies, p) or 0.0 for p in (50, 95, 99)}
    return {
        "clients": clients if rate is None else None,
        "rate": rate,
        "requests": total,
        "client": client,
        "unseen_share": unseen,
        "malformed_share": malformed,
        "answered": len(latencies),
        "rejected_422": bad_ok,
        "shed_503": shed,
        "errors": len(errors),
        "error_samples": errors[:3],
        "p50_ms": q[50],
        "p95_ms": q[95],
        "p99_ms": q[99],
        "max_ms": round(max(latencies), 2) if latencies else None,
        # Repeated questions reuse the server's cached retrieval and answer; new ones embed.
        "seen_p50_ms": pct(seen_ms, 50),
        "unseen_p50_ms": pct(unseen_ms, 50),
        "unseen_p99_ms": pct(unseen_ms, 99),
        # Time in the pipeline itself; the rest of p50/p99 is the queue, HTTP and the client.
        "pipeline_p50_ms": round(statistics.median(inside), 2) if inside else None,
        "pipeline_p99_ms": pct(inside, 99),
        # From the app getting the request to its response headers (Server-Timing `total`),
        # and the part of it spent waiting for a worker (`queue`): the rest of p99 is outside
        # the app (sockets, the event loop, the client's own loop).
        "server_p50_ms": pct([t.get("total", 0.0) for t in served], 50),
        "server_p99_ms": pct([t.get("total", 0.0) for t in served], 99),
        "queue_p99_ms": pct([t.get("queue", 0.0) for t in served], 99),
        "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        "throughput_rps": round(len(latencies) / wall, 1),
        # The load generator shares the machine: its CPU is CPU the server did not get.
        "client_cpu_share": round(client_cpu / wall, 2),
    }


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process now (VmRSS) and at its peak (VmHWM), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def pct(values: list[float], q: int) -> float | None:
    """The q-th percentile (inclusive method), or None under two values."""
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)
