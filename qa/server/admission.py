"""Admission control: CPU-bound request work on one worker per core, first come first served,
behind a bounded queue; past the bound a request is shed at once (503 + Retry-After).

Why not the thread pool FastAPI runs sync routes on: it has 40 threads, so 32 clients meant 32
questions embedded at once on 2 cores, each thread's torch and FAISS pools fighting the others,
every request slowed by all the others (p99 11.8 s in issue 17) and memory growing with the
threads' arenas. Here `workers` threads (the cores this process may run on) take jobs from one
FIFO queue; a request that finds `queue_limit` jobs already waiting is refused rather than made
to wait without bound. A queued job whose client went away is dropped before it runs.

    gate = Gate(workers=2, queue_limit=32, retry_after=1)
    answer = await gate.run(pipeline.ask, question)          # Overloaded when the queue is full
    more = await gate.run(next, events, None, admit=False)   # a later step of an admitted stream
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from qa.server.timing import record

T = TypeVar("T")


class Overloaded(Exception):
    """The queue is full: the request was not started; retry after `retry_after` seconds."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(
            f"The server is busy: {waiting} requests are already waiting (setting queue_limit). "
            f"Try again in {retry_after} s."
        )
        self.retry_after = retry_after


class Gate:
    """`workers` threads fed from one FIFO queue that holds at most `queue_limit` jobs."""

    def __init__(self, *, workers: int, queue_limit: int, retry_after: int) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.retry_after = retry_after
        self.shed = 0  # requests refused since start
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="qa-cpu")
        self._lock = threading.Lock()
        self._pending = 0  # admitted and not finished: running plus queued

    @property
    def pending(self) -> int:
        """Jobs admitted and not finished yet (running plus waiting)."""
        return self._pending

    @property
    def waiting(self) -> int:
        """Jobs admitted and not started yet (an estimate: workers may be between jobs)."""
        return max(0, self._pending - self.workers)

    def submit(
        self, fn: Callable[..., T], /, *args: Any, admit: bool = True, **kwargs: Any
    ) -> Future[T]:
        """Queue `fn(*args, **kwargs)`; Overloaded when `admit` and the queue is full.

        `admit=False` is for later steps of work already admitted (a stream's next event): it
        is queued in order like the rest but never refused, so no stream is cut off midway.
        """
        with self._lock:
            if admit and self._pending >= self.workers + self.queue_limit:
                self.shed += 1
                raise Overloaded(self._pending - self.workers, self.retry_after)
            self._pending += 1
        try:
            future = self._executor.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    async def run(
        self, fn: Callable[..., T], /, *args: Any, admit: bool = True, **kwargs: Any
    ) -> T:
        """`submit`, awaited; cancelling the caller drops the job if it has not started.

        The job's wait for a worker and its run go to the request's `Server-Timing`."""
        submitted = time.perf_counter()
        ran: list[float] = []

        def job() -> T:
            ran.append(time.perf_counter())
            try:
                return fn(*args, **kwargs)
            finally:
                ran.append(time.perf_counter())

        try:
            return await asyncio.wrap_future(self.submit(job, admit=admit))
        finally:
            if len(ran) == 2:
                record("queue", (ran[0] - submitted) * 1000)
                record("work", (ran[1] - ran[0]) * 1000)

    def _done(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Stop the workers once the queued jobs are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
