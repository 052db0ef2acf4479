"""Ingest jobs: one at a time on a background thread, the rest waiting in FIFO order.

A job is an upload (its files already saved in the corpus folder) or a delete (its file
already removed); running it is one incremental `build_index` of the whole folder followed
by the server's swap to the new index (`qa.server.live`). Jobs are kept in memory, the last
`KEPT` of them; a restarted server forgets them, but not their files: the corpus folder
holds those, and the next job (or `qa index`) indexes whatever is there.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from qa.errors import JobNotFoundError, QAError

log = logging.getLogger(__name__)

KEPT = 100
JobState = Literal["queued", "running", "done", "failed"]
FileState = Literal["queued", "running", "done", "failed"]


@dataclass(frozen=True)
class FileStatus:
    """One file of a job: its name, its document id, and how it went (error: why not)."""

    name: str
    doc_id: str
    status: FileState = "queued"
    error: str | None = None


@dataclass(frozen=True)
class Progress:
    """How far a job is: `done` of `total` `unit`s (chunks embedded, scanned pages read by
    OCR, or files read)."""

    done: int = 0
    total: int = 0
    unit: str = "files"


@dataclass(frozen=True)
class Job:
    """A snapshot of one job, as `GET /jobs/{id}` shows it."""

    job_id: str
    kind: Literal["upload", "delete"]
    state: JobState
    progress: Progress
    files: tuple[FileStatus, ...]
    error: str | None = None


class ProgressCallback(Protocol):
    """`progress(done, total)` in chunks, or in another unit (`"pages"`)."""

    def __call__(self, done: int, total: int, unit: str = "chunks") -> None: ...


# The work of a job: given the job and a progress callback, the files' outcome.
Runner = Callable[[Job, ProgressCallback], Sequence[FileStatus]]


class Jobs:
    """The job list and the one worker thread that runs them in order."""

    def __init__(self, run: Runner, *, kept: int = KEPT) -> None:
        self._run = run
        self._kept = kept
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._seq = itertools.count(1)

    def submit(self, kind: Literal["upload", "delete"], files: Sequence[FileStatus]) -> Job:
        """Queue a job for these files; it runs after every job queued before it."""
        job = Job(
            job_id=f"{next(self._seq)}-{uuid.uuid4().hex[:12]}",
            kind=kind,
            state="queued",
            progress=Progress(0, len(files), "files"),
            files=tuple(files),
        )
        with self._lock:
            self._jobs[job.job_id] = job
            self._forget_old()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="qa-ingest", daemon=True)
                self._worker.start()
        self._queue.put(job.job_id)
        return job

    def get(self, job_id: str) -> Job:
        """The job's current snapshot; JobNotFoundError when unknown or long forgotten."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(
                f"No job {job_id!r}: its id is wrong, or it finished long ago and was "
                f"forgotten (the server keeps the last {self._kept}) or the server restarted. "
                "GET /documents shows what is indexed."
            )
        return job

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def stop(self) -> None:
        """Let the worker finish its current job and end (queued jobs are dropped)."""
        self._queue.put(None)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
        for key in finished[: max(0, len(self._jobs) - self._kept)]:
            del self._jobs[key]

    def _update(self, job_id: str, **changes: object) -> Job:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)  # type: ignore[arg-type]
            self._jobs[job_id] = job
            return job

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self._update(
                job_id,
                state="running",
                files=tuple(replace(f, status="running") for f in self.get(job_id).files),
            )

            def progress(done: int, total: int, unit: str = "chunks", job_id: str = job_id) -> None:
                self._update(job_id, progress=Progress(done, total, unit))

            try:
                files = tuple(self._run(job, progress))
            except QAError as exc:
                log.warning("Job %s failed: %s", job_id, exc)
                failed = tuple(replace(f, status="failed", error=str(exc)) for f in job.files)
                self._update(job_id, state="failed", files=failed, error=str(exc))
                continue
            except Exception as exc:  # a bug: keep the worker alive for the next job, log it
                log.exception("Job %s failed with an internal error", job_id)
                reason = f"internal error ({type(exc).__name__}); see the server log"
                failed = tuple(replace(f, status="failed", error=reason) for f in job.files)
                self._update(job_id, state="failed", files=failed, error=reason)
                continue
            # A job fails when none of its files made it; per-file errors say which did not.
            state: JobState = "failed" if all(f.status == "failed" for f in files) else "done"
            last = self.get(job_id).progress
            self._update(job_id, state=state, files=files, progress=replace(last, done=last.total))
