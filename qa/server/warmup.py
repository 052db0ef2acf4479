"""Sentence vectors made ahead of questions, on a background thread, while no request runs.

The extractive answerer scores every sentence of the retrieved passages by its vector, and
embeds a passage's sentences the first time it quotes from it. On the demo that is paid once
by the first question; on a corpus of a few hundred documents nearly every new question meets
new passages, and it was ~0.36 of its ~0.37 s (bench/README.md). So once an index is served,
the default answerer embeds the sentences of all its chunks (`warm`), one encoder call
(~0.1 s) at a time and only while no request is admitted and no ingest job runs: a request
that arrives meanwhile shares a core with at most that one call. The vectors are also kept on
disk beside the index (SENTENCES_FILE in its embedding-cache folder, unless `embedding_cache`
is off), so a restart reads them back (that needs no idle core) instead of embedding them
again. Bounded by the setting
`warm_sentences` (0: off); an index with more chunks than that is left to embed as questions
come. A swap to a changed index starts again on the new pipeline, whose answerer already
holds the old one's vectors.
Stopping (the server's shutdown, or the interpreter's exit) waits for the call under way: a
thread killed inside onnxruntime aborts the process.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from qa.embedding.cache import SENTENCES_FILE, SliceDone, embed_with_cache, open_cache

if TYPE_CHECKING:
    from qa.pipeline import Pipeline
    from qa.server.admission import Gate

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.02  # how often a waiting warm-up looks for an idle gate again
# Sentences looked up on disk at a time (each lookup is one SQLite transaction), and per
# encoder call for the ones missing (~0.1 s: the longest a request shares its core with one).
_LOOKUP_TEXTS = 256
_ENCODE_TEXTS = 8
_JOIN_S = 30.0  # the longest a stop waits for the encoder call under way (~0.1 s)
_ALL: weakref.WeakSet[Warmup] = weakref.WeakSet()


class Warmup:
    """Runs the default answerer's `warm` for the pipeline being served, in the background."""

    def __init__(self, gate: Gate, limit: int) -> None:
        self.gate = gate
        self.limit = limit
        self.sentences = 0  # embedded ahead by the current run
        self.running = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._busy: list[Callable[[], bool]] = [lambda: gate.pending > 0]
        _ALL.add(self)

    def pause_while(self, busy: Callable[[], bool]) -> None:
        """Also wait while `busy()` (an ingest job running: it has the cores then)."""
        self._busy.append(busy)

    def start(self, pipeline: Pipeline) -> None:
        """Warm `pipeline`'s default answerer, stopping the run for the previous pipeline."""
        with self._lock:
            self._stop.set()
            self._stop = stop = threading.Event()
            self.sentences, self.running = 0, False
            warm = getattr(pipeline.answerer(), "warm", None)
            n_chunks = pipeline.store.n_chunks
            if warm is None or self.limit <= 0 or not n_chunks:
                return
            if n_chunks > self.limit:
                log.info(
                    "Not embedding sentences ahead of questions: %d chunks is over the "
                    "warm_sentences setting (%d); each is embedded when first quoted.",
                    n_chunks,
                    self.limit,
                )
                return
            self.running = True
            thread = threading.Thread(
                target=self._run, args=(pipeline, warm, stop), name="qa-warm", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def stop(self) -> None:
        """Stop warming and wait for the encoder call under way."""
        with self._lock:
            self._stop.set()
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(_JOIN_S)

    def _run(self, pipeline: Pipeline, warm: Callable[..., int], stop: threading.Event) -> None:
        def idle() -> bool:
            """Wait until nothing else wants the cores; False once stopped."""
            while not stop.is_set():
                if not any(busy() for busy in self._busy):
                    return True
                stop.wait(_IDLE_POLL_S)
            return False

        t0 = time.perf_counter()
        settings, embedder = pipeline.settings, pipeline.embedder
        cache = None
        try:
            # Opened here: an SQLite connection stays on the thread that made it.
            cache = open_cache(settings, settings.index_dir, embedder, file=SENTENCES_FILE)

            def encode(texts: list[str], done: SliceDone) -> np.ndarray:
                # Only the encoder waits for idle cores, one short call at a time: vectors
                # read from disk need none, so a restart has them back while it serves.
                parts = []
                for i in range(0, len(texts), _ENCODE_TEXTS):
                    if not idle():
                        raise _Stopped
                    part = embedder.embed_documents(texts[i : i + _ENCODE_TEXTS])
                    done(range(i, i + len(part)), part)
                    parts.append(part)
                return np.concatenate(parts)

            def embed(texts: list[str]) -> np.ndarray:
                return embed_with_cache(cache, texts, encode, embedder.dim)

            chunks = pipeline.store.chunks()
            done = warm(
                chunks,
                limit=self.limit,
                go_on=lambda: not stop.is_set(),
                embed=embed,
                batch=_LOOKUP_TEXTS,
            )
            if cache is not None:
                cache.prune()
        except _Stopped:
            done = 0
        except Exception:  # best effort: questions embed their sentences as they come
            log.exception("Embedding sentences ahead of questions failed; carrying on without")
            done = 0
        finally:
            if cache is not None:
                cache.close()
        with self._lock:
            if stop.is_set():  # a newer pipeline's run owns the counters now
                return
            self.sentences, self.running = done, False
        read = cache.hits if cache is not None else 0
        log.info(
            "Sentence vectors ready ahead of questions: %d (%d read from %s, %d embedded) in "
            "%.1f s.",
            done,
            read,
            SENTENCES_FILE,
            done - read,
            time.perf_counter() - t0,
        )


class _Stopped(Exception):
    """The warm-up was stopped while it waited for idle cores."""


@atexit.register
def _stop_all() -> None:
    for warmup in list(_ALL):
        warmup.stop()
