"""Test helpers: a real uvicorn server on a free loopback port, and demo indexes in tmp folders."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from qa.config import Settings, load_settings
from qa.pipeline import Pipeline
from qa.server.admission import Gate

ROOT = Path(__file__).resolve().parent.parent
DEMO_CORPUS = ROOT / "corpus"


class LiveServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a thread, as a context manager."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # the kernel picks a free port: no race
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, what="uvicorn to start", timeout=30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def wait_for(check: Callable[[], object], *, what: str, timeout: float = 60.0) -> None:
    """Poll `check` until it is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class ServeProcess:
    """`command` (a `qa serve`) as a real process on `port`, ready once `/readyz` says 200.

    On exit it is stopped with SIGINT, as Ctrl-C would; `output` then holds what it printed.
    Its output is read as it comes: a full pipe would block the server's logging, and with
    it the server (its access log fills 64 KB in a few hundred requests).
    """

    def __init__(
        self, command: list[Any], *, port: int, cwd: Path, env: dict[str, str], timeout: float
    ) -> None:
        self.command = [str(part) for part in command]
        self.url = f"http://127.0.0.1:{port}"
        self.cwd, self.env, self.timeout = cwd, env, timeout
        self.output = ""
        self._lines: list[str] = []

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        try:
            wait_for(
                self._ready, what=f"{' '.join(self.command)} to become ready", timeout=self.timeout
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _ready(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            self._collect()
            raise AssertionError(f"qa serve exited: {self.output[-2000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self._collect()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    def _collect(self) -> None:
        """Wait for the process to end and keep its output."""
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=30)
        self.output = "".join(self._lines)


def demo_corpus_copy(folder: Path, extra: dict[str, str] | None = None) -> Path:
    """A copy of the demo corpus in `folder`/corpus, plus `extra` files (name -> text)."""
    corpus = folder / "corpus"
    shutil.copytree(DEMO_CORPUS, corpus)
    for name, text in (extra or {}).items():
        (corpus / name).write_text(text, encoding="utf-8")
    return corpus


def build_demo_index(
    folder: Path, *, extra: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    """Settings whose index (built here, with the real model) covers the demo corpus + `extra`."""
    from qa.embedding.models import get_embedder
    from qa.ingest.build import build_index

    corpus = demo_corpus_copy(folder, extra)
    settings = load_settings(
        corpus_dir=corpus, index_dir=folder / "index", _env_file=None, **overrides
    )
    embedder = get_embedder(
        settings.embedding_model, device=settings.device, batch_size=settings.embedding_batch_size
    )
    build_index(settings, embedder=embedder)
    return settings


@contextmanager
def held(gate: Gate) -> Iterator[threading.Event]:
    """Every worker of the gate busy until the yielded Event is set (set on exit too)."""
    release = threading.Event()
    jobs = [gate.submit(release.wait, admit=False) for _ in range(gate.workers)]
    try:
        yield release
    finally:
        release.set()
        for job in jobs:
            job.result(timeout=60)


def new_wording(question: str, n: int) -> str:
    """`question` with the gaps between its words widened by the base-4 digits of `n`: text new
    to a server (no kept answer, retrieval or question vector), the same words to the model,
    BM25 and the answerer, so the same answer. A tag ("(asked 3)") or another letter case
    ("COLour" reads as a name the documents lack) can change the answer."""
    words = question.split(" ")
    assert 0 <= n < 4 ** (len(words) - 1), f"{question!r} has too few words for {n}"
    out = [words[0]]
    for word in words[1:]:
        out.append(" " * (1 + n % 4) + word)
        n //= 4
    return "".join(out)


def answering_alone(pipeline: Pipeline) -> Pipeline:
    """`pipeline`'s index with a model instance of its own and nothing kept: the answer a
    question gets the first time it is asked, with nothing else running. A server's answers are
    compared with this one; the served pipeline would give back what the server kept."""
    from qa.embedding.models import SentenceTransformerEmbedder, export_dir_for
    from qa.embedding.runtime import ExportedEmbedder

    s = pipeline.settings
    embedder: Any
    if s.embedding_backend == "torch":
        embedder = SentenceTransformerEmbedder(
            s.embedding_model,
            device=s.device,
            batch_size=s.embedding_batch_size,
            dtype=s.embedding_dtype,
            processes=s.embedding_processes,
        )
    else:
        embedder = ExportedEmbedder(
            s.embedding_model,
            backend=s.embedding_backend,
            batch_size=s.embedding_batch_size,
            folder=export_dir_for(s),
            workers=s.embedding_workers,
        )
    return Pipeline(s, store=pipeline.store, embedder=embedder)
