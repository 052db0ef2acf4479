"""Readiness of the app: the Pipeline once loaded (in the background), or why there is none yet.

Every API route takes the pipeline through the `Ready` dependency, which answers 503 with the
reason (and Retry-After) until it is loaded.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

from qa.config import Settings
from qa.pipeline import Pipeline
from qa.server.admission import Gate, cpu_cores

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
        )
        self.pipeline: Pipeline | None = None
        self.reason = LOADING
        self.counts = (0, 0)
        if pipeline is not None:
            self.ready(pipeline)

    def ready(self, pipeline: Pipeline) -> None:
        self.counts = (document_count(pipeline), pipeline.store.n_chunks)
        self.pipeline = pipeline

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


def gate_of(request: Request) -> Gate:
    """The app's admission gate."""
    return app_state(request.app).gate


Work = Annotated[Gate, Depends(gate_of)]
