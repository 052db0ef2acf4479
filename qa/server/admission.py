"""Admission control: CPU-bound request work on one worker per core, first come first served,
behind a bounded queue; past the bound a request is shed at once (503 + Retry-After).

Why not the thread pool FastAPI runs sync routes on: it has 40 threads, so as many clients
have their questions embedded at once on a few cores, each thread's torch and FAISS pools
fighting the others, every request slowed by all the others and memory growing with the
threads' arenas. Here `workers` threads (the cores this process may run on) take jobs from one
FIFO queue. A request is refused rather than made to wait without bound when it finds
`queue_limit` jobs already waiting, or when its wait, estimated from the recent jobs' time on a
worker, would be over `queue_wait` seconds: the bound is on the wait a client sees, so it holds
whether a job takes milliseconds (a repeated question) or most of a second (a new one over a
million chunks). A count alone cannot do both: a short queue sheds clients that fast jobs
would serve at once, and a long one makes them wait for minutes when jobs are slow. The 5 s
default lets a few people asking during an ingest wait rather than be refused; bench/serving.py
measures latency and shedding under load. A queued job whose client went away is dropped
before it runs.

    gate = Gate(workers=2, queue_limit=256, retry_after=1, queue_wait=5.0)
    answer = await gate.run(pipeline.ask, question)          # Overloaded when the queue is full
    more = await gate.run(next, events, None, admit=False)   # a later step of an admitted stream
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from qa.server.timing import record

T = TypeVar("T")


class Overloaded(Exception):
    """The queue is full, or its wait too long: the request was not started; retry after
    `retry_after` seconds."""

    def __init__(self, waiting: int, retry_after: int, wait_s: float | None = None) -> None:
        why = (
            "(setting queue_limit)"
            if wait_s is None
            else f"(about {wait_s:.1f} s of work; setting queue_wait)"
        )
        super().__init__(
            f"The server is busy: {waiting} requests are already waiting {why}. "
            f"Try again in {retry_after} s."
        )
        self.retry_after = retry_after


class Gate:
    """`workers` threads fed from one FIFO queue that holds at most `queue_limit` jobs and at
    most about `queue_wait` seconds of work."""

    def __init__(
        self, *, workers: int, queue_limit: int, retry_after: int, queue_wait: float = 5.0
    ) -> None:
        self.workers = workers
        self.queue_limit = queue_limit
        self.retry_after = retry_after
        self.queue_wait = queue_wait
        self.shed = 0  # requests refused since start
        self.work_s = 0.0  # a job's time on a worker, averaged over the recent ones (observe)
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
            waiting = self._pending - self.workers  # ahead of this job, if all workers are busy
            if admit and waiting >= self.queue_limit:
                self.shed += 1
                raise Overloaded(waiting, self.retry_after)
            # Its wait: the jobs ahead plus itself, shared by the workers. One job per worker may
            # always wait, so a slow index (jobs longer than queue_wait) is still served.
            wait_s = (waiting + 1) * self.work_s / self.workers
            if admit and waiting >= self.workers and wait_s > self.queue_wait:
                self.shed += 1
                raise Overloaded(waiting, self.retry_after, wait_s)
            self._pending += 1
        try:
            # In the submitter's context, as asyncio.to_thread runs it: a request's context
            # variables (the LLM token meter) reach the worker.
            job = functools.partial(fn, *args, **kwargs)
            future = self._executor.submit(contextvars.copy_context().run, job)
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
                self.observe(ran[1] - ran[0])
                record("queue", (ran[0] - submitted) * 1000)
                record("work", (ran[1] - ran[0]) * 1000)

    def observe(self, work_s: float) -> None:
        """Count a finished job's time on a worker into the average the wait is estimated
        from (exponential, so the estimate follows a change of workload within ~20 jobs)."""
        with self._lock:
            self.work_s = (
                work_s if self.work_s == 0.0 else self.work_s + 0.1 * (work_s - self.work_s)
            )

    def _done(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Stop the workers once the queued jobs are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
