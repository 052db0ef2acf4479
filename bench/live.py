"""Live documents: upload -> answerable for a 24-page PDF, and /ask during its ingest.

Runs the real `qa serve` in a subprocess on a free loopback port over a copy of the demo corpus
in a temporary folder (the embedding cache off, so every upload embeds all its chunks), then:

1. idle: /ask latency at `--clients` concurrent clients over the demo questions;
2. busy: the same load while the PEP 703 paper (bench/paper_pdf.py, 24 pages) is uploaded
   and ingested: the latencies of the asks that ran while the job did, and the upload's time
   from POST /documents to the job done and to the first /ask that cites the paper;
3. quiet: the paper deleted, then uploaded again with no other load: upload -> answerable.

The ratio busy/idle comes from one run on one server. Writes bench/out/live.json.

    .venv/bin/python bench/live.py [--clients 4] [--idle-requests 200]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, Run, clean_env, demo_questions, table
from httpload import free_port
from paper_pdf import paper

PAPER_QUESTION = "How many threads per process would DeepMind like to run?"
PAPER_NAME = "pep-0703.pdf"


def start_serve(work: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """`qa serve` over work/corpus (its index built on start), once /readyz says 200."""
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--corpus", str(work / "corpus")]
    cmd += ["--index", str(work / "index"), "--port", str(port), "--embedding-cache", "false"]
    env = clean_env()
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
    return {"n": len(ms), "errors": errors, "p50_ms": round(q[49], 1), "p99_ms": round(q[98], 1)}


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
    return {"job_done_s": round(done, 1), "answerable_s": round(time.perf_counter() - t0, 1)}


def delete(c: httpx.Client, doc_id: str) -> None:
    job_id = c.delete(f"/documents/{doc_id}").json()["job_id"]
    while c.get(f"/jobs/{job_id}").json()["state"] not in ("done", "failed"):
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--idle-requests", type=int, default=200)
    args = parser.parse_args()
    bench = Run("live")
    questions = demo_questions()
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

    result: dict[str, Any] = {
        "pdf": {
            "pages": len(made.pages),
            "bytes": len(pdf),
            "chunks": listed[PAPER_NAME]["chunks"],
        },
        "clients": args.clients,
        "idle": idle,
        "during_ingest": busy,
        "p50_ratio": round(busy["p50_ms"] / idle["p50_ms"], 2),
        "p99_ratio": round(busy["p99_ms"] / idle["p99_ms"], 2),
        "upload_under_load": busy_upload,
        "upload_quiet": quiet_upload,
    }
    pdf_info = result["pdf"]
    asks = table(
        f"/ask from {args.clients} clients, idle and while the PDF is ingested (ms)",
        ["", "asks", "errors", "p50", "p99"],
        [
            ["idle", idle["n"], idle["errors"], idle["p50_ms"], idle["p99_ms"]],
            ["during the ingest", busy["n"], busy["errors"], busy["p50_ms"], busy["p99_ms"]],
            ["ratio", "", "", result["p50_ratio"], result["p99_ratio"]],
        ],
    )
    upload = table(
        f"Upload -> answerable: PEP 703 as a {pdf_info['pages']}-page PDF "
        f"({pdf_info['bytes'] // 1000} KB, {pdf_info['chunks']} chunks), seconds",
        ["", "POST /documents -> job done", "-> first /ask citing it"],
        [
            [f"under the {args.clients}-client load", busy_upload["job_done_s"],
             busy_upload["answerable_s"]],
            ["quiet (deleted, uploaded again)", quiet_upload["job_done_s"],
             quiet_upload["answerable_s"]],
        ],
    )  # fmt: skip
    bench.write(result, [asks, upload])
    return 0


if __name__ == "__main__":
    sys.exit(main())
