"""A running server on the newest index: swaps after its own jobs and after `qa index` elsewhere.

`Live.refresh` opens the index as it is now beside the pipeline in use (`Pipeline.reopen`:
the embedding model is shared, not loaded again), then swaps `AppState.pipeline` with one
assignment. A request holds the pipeline it got from the `Ready` dependency, so one in flight
finishes on the old index (its files stay readable: open and memory-mapped files outlive
the folder swap), and the old pipeline is freed when the last such request ends.

What changed is told by `qa.stores.index_version` (the FAISS manifest's inode and mtime, or
the Postgres generation), polled every `watch_interval` seconds on a background thread: one
`stat` (or one small query) per poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace

from qa.errors import DocumentNotFoundError, QAError
from qa.server.jobs import FileStatus, Job, Jobs, ProgressCallback
from qa.server.state import AppState
from qa.stores import index_version

log = logging.getLogger(__name__)


class Live:
    """Keeps an app's pipeline on the newest index and runs its ingest jobs, one at a time."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.jobs = Jobs(self._run_job)
        self._lock = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def refresh(self) -> bool:
        """Swap to the index on disk if it changed since the pipeline was opened; True if so."""
        with self._lock:
            pipeline = self.state.pipeline
            if pipeline is None:
                return False
            version = index_version(pipeline.opened_with, pipeline.store)
            if version is None or version == self.state.version:
                return False
            fresh = pipeline.reopen()
            fresh.answerer()  # created now, not by the first question after the swap
            self.state.ready(fresh, version=version)
        documents, chunks = self.state.counts
        log.info("Now serving the new index: %d documents, %d chunks.", documents, chunks)
        return True

    def watch(self, interval: float) -> None:
        """Poll for index changes made elsewhere every `interval` seconds (0: never)."""
        if interval <= 0 or self._watcher is not None:
            return
        self._watcher = threading.Thread(
            target=self._watch, args=(interval,), name="qa-watch", daemon=True
        )
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        self.jobs.stop()

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except QAError as exc:
                log.warning(
                    "The index changed but cannot be opened (%s); still serving the last.", exc
                )
            except Exception:  # a bug: keep watching, keep serving the last index
                log.exception("Reloading the changed index failed; still serving the last.")

    def _run_job(self, job: Job, progress: ProgressCallback) -> Sequence[FileStatus]:
        """Index the corpus folder as it is now, swap to the result, and say how each file went."""
        from qa.ingest.build import build_index

        pipeline = self.state.pipeline
        if pipeline is None:  # jobs are only queued once the server is ready
            raise QAError("The server has no index loaded; restart `qa serve`.")
        report = build_index(
            pipeline.opened_with,
            embedder=pipeline.embedder,
            on_progress=progress,
            on_pages=lambda done, total: progress(done, total, "pages"),
        )
        self.refresh()
        served = self.state.pipeline or pipeline
        skipped = {s.path: s.reason for s in report.skipped}
        outcome = []
        for f in job.files:
            try:
                served.store.document(f.doc_id)
                indexed = True
            except DocumentNotFoundError:
                indexed = False
            if job.kind == "delete":
                error = "its file is back in the corpus folder" if indexed else None
            elif f.doc_id in skipped:
                error = f"not indexed: {skipped[f.doc_id]}"
            else:
                error = None if indexed else "its file left the corpus folder before indexing"
            outcome.append(replace(f, status="failed" if error else "done", error=error))
        return outcome
