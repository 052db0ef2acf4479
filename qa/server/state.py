"""Readiness of the app: the Pipeline once loaded (in the background), or why there is none yet.

Every API route takes the pipeline through the `Ready` dependency, which answers 503 with the
reason (and Retry-After) until it is loaded.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from qa.config import Settings, cpu_cores
from qa.pipeline import Pipeline
from qa.server.admission import Gate
from qa.server.timing import record
from qa.server.warmup import Warmup
from qa.types import Answer

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
        if pipeline is not None:
            self.ready(pipeline)

    def ready(self, pipeline: Pipeline, *, version: object = None) -> None:
        """Serve `pipeline` from now on (an index of `version`, else the one on disk now)."""
        from qa.stores import index_version

        self.version = version or index_version(pipeline.opened_with, pipeline.store)
        self.counts = (document_count(pipeline), pipeline.store.n_chunks)
        # One assignment: a request gets the old pipeline or the new one, never a mix.
        self.pipeline = pipeline
        self.warmup.start(pipeline)

    def failed(self, reason: str) -> None:
        self.reason = reason


def document_count(pipeline: Pipeline) -> int:
    """How many documents the index holds: from its manifest, else by reading them all.

    The manifest's count saves start-up from loading every document's text just to count it
    (1.5 GB of text at 1M chunks; bench/README.md).
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
