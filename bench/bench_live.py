"""Live documents benchmark: upload -> answerable for a 30-page PDF, and /ask during an ingest.

Runs the real `qa serve` in a subprocess on a free loopback port over a copy of the demo corpus
in a temporary folder (the embedding cache off, so every upload embeds all its chunks), then:

1. idle: /ask latency at `--clients` concurrent clients over the demo questions;
2. busy: the same load while the PEP 703 paper (bench/paper_pdf.py, ~30 pages) is uploaded
   and ingested: the latencies of the asks that ran while the job did, and the upload's time
   from POST /documents to the job done and to the first /ask that cites the paper;
3. quiet: the paper deleted, then uploaded again with no other load: upload -> answerable.

The ratio busy/idle comes from one run on one server. Writes bench/out/live.json.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_live.py [--clients 4] [--idle-requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.paper_pdf import paper  # noqa: E402

QUESTIONS = ROOT / "bench" / "demo_questions.jsonl"
PAPER_QUESTION = "How many threads per process would DeepMind like to run?"
PAPER_NAME = "pep-0703.pdf"
OUT = ROOT / "bench" / "out" / "live.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(work: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """`qa serve` over work/corpus (its index built on start), once /readyz says 200."""
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--corpus", str(work / "corpus")]
    cmd += ["--index", str(work / "index"), "--port", str(port), "--embedding-cache", "false"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env["HF_HUB_OFFLINE"] = "1"
    with (work / "serve.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"qa serve exited; see {work / 'serve.log'}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("qa serve did not become ready in 600 s")


class Load:
    """`clients` threads asking the demo questions in turn, recording (start, end, status)."""

    def __init__(self, url: str, questions: list[str], clients: int) -> None:
        self.url, self.questions, self.clients = url, questions, clients
        self.samples: list[tuple[float, float, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run(self, total: int | None = None) -> None:
        """Ask until `total` answers (then return), or until `stop` when total is None."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._client, args=(i, total)) for i in range(self.clients)
        ]
        for t in self._threads:
            t.start()
        if total is not None:
            self.join()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        for t in self._threads:
            t.join()

    def _client(self, i: int, total: int | None) -> None:
        with httpx.Client(base_url=self.url, timeout=300) as c:
            n = i
            while not self._stop.is_set():
                with self._lock:
                    if total is not None and len(self.samples) >= total:
                        return
                t0 = time.perf_counter()
                r = c.post("/ask", json={"question": self.questions[n % len(self.questions)]})
                with self._lock:
                    self.samples.append((t0, time.perf_counter(), r.status_code))
                n += self.clients


def stats(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    ms = sorted((end - start) * 1000 for start, end, status in samples if status == 200)
    errors = sum(1 for *_, status in samples if status != 200)
    if len(ms) < 2:
        return {"n": len(ms), "errors": errors}
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "errors": errors, "p50_ms": q[49], "p99_ms": q[98]}


def upload_until_answerable(c: httpx.Client, pdf: bytes) -> dict[str, float]:
    """Seconds from POST /documents to the job done, and to an /ask citing the paper."""
    t0 = time.perf_counter()
    r = c.post("/documents", files=[("files", (PAPER_NAME, pdf, "application/pdf"))])
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while (job := c.get(f"/jobs/{job_id}").json())["state"] not in ("done", "failed"):
        time.sleep(0.05)
    if job["state"] != "done":
        raise SystemExit(f"the upload failed: {job}")
    done = time.perf_counter() - t0
    answer = c.post("/ask", json={"question": PAPER_QUESTION}).json()
    cited = {x["doc_id"] for x in answer["citations"]}
    if PAPER_NAME not in cited:
        raise SystemExit(f"the paper's question was not answered from it: {answer['answer']!r}")
    return {"job_done_s": done, "answerable_s": time.perf_counter() - t0}


def delete(c: httpx.Client, doc_id: str) -> None:
    job_id = c.delete(f"/documents/{doc_id}").json()["job_id"]
    while c.get(f"/jobs/{job_id}").json()["state"] not in ("done", "failed"):
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--idle-requests", type=int, default=200)
    args = parser.parse_args()

    questions = [json.loads(line)["question"] for line in QUESTIONS.open(encoding="utf-8")]
    made = paper()
    pdf = made.pdf()
    work = Path(tempfile.mkdtemp(prefix="qa-bench-live-"))
    shutil.copytree(ROOT / "corpus", work / "corpus")
    proc, url = start_serve(work, free_port())
    try:
        load = Load(url, questions, args.clients)
        load.run(20)  # warm-up
        load.samples.clear()
        load.run(args.idle_requests)
        idle = stats(load.samples)

        load.samples.clear()
        load.run()
        with httpx.Client(base_url=url, timeout=300) as c:
            t_start = time.perf_counter()
            busy_upload = upload_until_answerable(c, pdf)
            t_end = t_start + busy_upload["job_done_s"]
            load.stop()
            during = [s for s in load.samples if s[0] >= t_start and s[1] <= t_end]
            busy = stats(during)
            delete(c, PAPER_NAME)
            quiet_upload = upload_until_answerable(c, pdf)
            listed = {d["doc_id"]: d for d in c.get("/documents").json()["documents"]}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "pdf": {
            "pages": len(made.pages),
            "bytes": len(pdf),
            "chunks": listed[PAPER_NAME]["chunks"],
        },
        "clients": args.clients,
        "idle": idle,
        "during_ingest": busy,
        "p50_ratio": busy["p50_ms"] / idle["p50_ms"],
        "p99_ratio": busy["p99_ms"] / idle["p99_ms"],
        "upload_under_load": busy_upload,
        "upload_quiet": quiet_upload,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
