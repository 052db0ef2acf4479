"""Readiness of the app: the Pipeline once loaded (in the background), or why there is none yet.

Every API route takes the pipeline through the `Ready` dependency, which answers 503 with the
reason (and Retry-After) until it is loaded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from qa.config import Settings, cpu_cores
from qa.pipeline import Pipeline, StreamEvent
from qa.server.admission import Gate
from qa.server.timing import record
from qa.server.warmup import Warmup
from qa.types import Answer

if TYPE_CHECKING:
    from qa.stores.feedback import FeedbackStore

LOADING = "The index and the embedding model are still loading; try again in a few seconds."


class AppState:
    """Readiness (the pipeline once loaded, or the reason there is none yet) and the gate
    every CPU-bound request step passes (one worker per core, a bounded queue)."""

    def __init__(self, settings: Settings, pipeline: Pipeline | None) -> None:
        self.settings = settings
        self.gate = Gate(
            workers=cpu_cores(),
            queue_limit=settings.queue_limit,
            retry_after=settings.retry_after,
            queue_wait=settings.queue_wait,
        )
        self.warmup = Warmup(self.gate, settings.warm_sentences)
        self.pipeline: Pipeline | None = None
        self.reason = LOADING
        self.counts = (0, 0)
        # The index version (qa.stores.index_version) the pipeline serves: `Live` compares it.
        self.version: object = None
        # What a served answer's record names as its index (`qa.stores.feedback`).
        self.version_label = "unknown"
        self._answer_log: FeedbackStore | None = None
        self._answer_log_lock = threading.Lock()
        if pipeline is not None:
            self.ready(pipeline)

    def ready(self, pipeline: Pipeline, *, version: object = None) -> None:
        """Serve `pipeline` from now on (an index of `version`, else the one on disk now)."""
        from qa.stores import index_version
        from qa.stores.feedback import index_version_label

        self.version = version or index_version(pipeline.opened_with, pipeline.store)
        self.version_label = index_version_label(pipeline.store)
        self.counts = (document_count(pipeline), pipeline.store.n_chunks)
        # One assignment: a request gets the old pipeline or the new one, never a mix.
        self.pipeline = pipeline
        self.warmup.start(pipeline)

    def failed(self, reason: str) -> None:
        self.reason = reason

    def answer_log(self) -> FeedbackStore:
        """Where served answers and their feedback are kept (opened on first use): beside the
        index the pipeline serves."""
        with self._answer_log_lock:
            if self._answer_log is None:
                from qa.stores import open_feedback

                served = self.pipeline.opened_with if self.pipeline else self.settings
                self._answer_log = open_feedback(served)
            return self._answer_log

    def record(self, answer: Answer) -> Answer:
        """`answer` with its answer_id, recorded as served (blocking: call off the loop)."""
        return self.answer_log().record(answer, index_version=self.version_label)

    async def served(self, answer: Answer) -> Answer:
        """`record` in the thread pool, so the event loop does not wait on the disk."""
        return await run_in_threadpool(self.record, answer)

    def close(self) -> None:
        with self._answer_log_lock:
            if self._answer_log is not None:
                self._answer_log.close()
                self._answer_log = None


def recorded(events: Iterator[StreamEvent], state: AppState) -> Iterator[StreamEvent]:
    """`events` with the final Answer recorded as served (on the worker that makes it)."""
    try:
        for event in events:
            if event.kind == "answer":
                event = StreamEvent("answer", state.record(event.data))
            yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def document_count(pipeline: Pipeline) -> int:
    """How many documents the index holds: from its manifest, else by reading them all.

    The manifest's count saves start-up from loading every document's text just to count it
    (gigabytes of text at a million chunks).
    """
    manifest = getattr(pipeline.store, "manifest", None)
    count = manifest.get("counts", {}).get("documents") if isinstance(manifest, dict) else None
    if isinstance(count, int):
        return count
    return len(pipeline.store.documents())


def app_state(app: FastAPI) -> AppState:
    """The readiness holder of an app made by `create_app`."""
    state: AppState = app.state.qa
    return state


async def ready_pipeline(request: Request) -> Pipeline:
    """The loaded pipeline (the dependency of every API route), or 503 with the reason."""
    # async: a sync dependency would cost every request a hop through the thread pool.
    state = app_state(request.app)
    if state.pipeline is None:
        raise HTTPException(503, state.reason, headers={"Retry-After": "5"})
    return state.pipeline


Ready = Annotated[Pipeline, Depends(ready_pipeline)]


async def gate_of(request: Request) -> Gate:
    """The app's admission gate (async, like `ready_pipeline`: no thread-pool hop)."""
    return app_state(request.app).gate


Work = Annotated[Gate, Depends(gate_of)]


async def state_of(request: Request) -> AppState:
    """The app's AppState (async, like `ready_pipeline`: no thread-pool hop)."""
    return app_state(request.app)


State = Annotated[AppState, Depends(state_of)]


def cpu_bound(pipeline: Pipeline, answerer: str | None) -> bool:
    """Whether the answer step of this answerer works the CPU (else it waits on a backend)."""
    return bool(getattr(pipeline.answerer(answerer), "cpu_bound", True))


async def answer(gate: Gate, pipeline: Pipeline, question: str, **options: Any) -> Answer:
    """`pipeline.ask` on the gate's workers; an answerer that waits on a backend (an LLM) gets
    only its retrieval there and waits in the ordinary thread pool, holding no core's worker.
    A repeated question whose answer is kept (`Pipeline.recall`) needs no worker at all."""
    t0 = time.perf_counter()
    recalled = pipeline.recall(question, **options)
    if recalled is not None:
        record("recall", (time.perf_counter() - t0) * 1000)
        return recalled
    if cpu_bound(pipeline, options.get("answerer")):
        return await gate.run(pipeline.ask, question, **options)
    prepared = await gate.run(pipeline.prepare, question, **options)
    return await run_in_threadpool(pipeline.complete, prepared, options.get("history", ()))
