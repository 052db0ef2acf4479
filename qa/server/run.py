"""`qa serve`: the app under uvicorn, with the index and models loaded once in the background.

The socket opens at once, so /healthz answers while the index loads (or is first built from
the corpus, with progress in the log); /readyz and the API say 503 with the reason until then.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from fastapi import FastAPI

from qa.config import Settings
from qa.embedding.backends import importable
from qa.errors import QAError

log = logging.getLogger(__name__)


def load_in_background(
    app: FastAPI, settings: Settings, *, build_if_missing: bool = True
) -> threading.Thread:
    """Start loading the pipeline for `app` in a thread; the app turns ready when it is done."""
    from qa.server.app import app_state

    state = app_state(app)

    def run() -> None:
        from qa.pipeline import Pipeline
        from qa.stores import index_version

        t0 = time.perf_counter()
        log.info("Loading the index from %s/ ...", settings.index_dir)
        # Taken before loading: an index swapped in meanwhile is then a change to pick up.
        version = index_version(settings)
        try:
            pipeline = Pipeline.load(settings, build_if_missing=build_if_missing, progress=True)
            pipeline.answerer()  # create the default answerer now, not on the first question
            single_threaded_kernels()
        except QAError as exc:
            log.error("Cannot answer questions: %s", exc)
            state.failed(f"{exc} Then restart `qa serve`.")
            return
        except Exception:
            log.exception("Loading the index failed")
            state.failed("Loading the index failed with an internal error; see the server log.")
            raise
        state.ready(pipeline, version=version)
        documents, chunks = state.counts
        log.info(
            "Ready in %.1fs: %d documents, %d chunks, answerer %r.",
            time.perf_counter() - t0,
            documents,
            chunks,
            settings.answerer,
        )

    thread = threading.Thread(target=run, name="qa-load", daemon=True)
    thread.start()
    return thread


def single_threaded_kernels() -> None:
    """One thread per torch and FAISS call: requests are the parallelism (one worker per core).

    With their default pools every request's kernels spread over all cores while the other
    workers' do too, and each waits for the others' threads: a query embedding or a FAISS search
    is several times slower than on one thread. Set after loading: an index build uses every
    core.
    """
    import faiss

    faiss.omp_set_num_threads(1)
    torch = sys.modules.get("torch")  # only if something loaded it: never import it for this
    if torch is not None:
        torch.set_num_threads(1)


def import_native_libraries(settings: Settings) -> None:
    """Import the native libraries this start will load, on the calling (main) thread.

    Call it before any other thread starts importing: torch imported from the loader thread
    while uvicorn imported too has been seen to hang start-up. torch and sentence-transformers
    (~9 s of imports) only when loading needs them (`needs_torch`); with an exported model
    cached, onnxruntime instead.
    """
    import faiss  # noqa: F401

    from qa.embedding.models import needs_torch

    if needs_torch(settings):
        import sentence_transformers  # noqa: F401
    elif importable("onnxruntime"):
        import onnxruntime  # noqa: F401


def serve(settings: Settings) -> None:
    """Run the chat page and the HTTP API on settings.host:settings.port until interrupted."""
    from qa.server.documents import check_write_access

    check_write_access(settings)  # before the slow imports: a refusal should be quick

    import uvicorn

    import_native_libraries(settings)

    from qa.server.app import create_app

    app = create_app(settings)
    load_in_background(app, settings)
    log.info("Chat page: http://%s:%d/  (API docs at /docs)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
