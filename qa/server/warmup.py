"""Sentence vectors made ahead of questions, on a background thread.

The extractive answerer scores every sentence of the retrieved passages by its vector, and
embeds a passage's sentences the first time it quotes from it. On the demo that is paid once
by the first question; on a corpus of a few hundred documents nearly every new question meets
new passages, and embedding them is nearly all of its answer's time. So once an index is served,
this hands the default answerer the vectors of all its chunks' sentences (`warm_texts`,
`remember`): first those kept on disk beside the index (SENTENCES_FILE in its embedding-cache
folder, unless `embedding_cache` is off), which needs no idle core, so a restart has them back
within a second or two; then the rest from the encoder, one call (~0.1 s) at a time and only
while no request is admitted and no ingest job runs, so a request that arrives meanwhile
shares a core with at most that one call. Bounded by the setting `warm_sentences` (0: off);
an index with more chunks than that is left to embed as questions come. A swap to a changed
index starts again on the new pipeline, whose answerer already holds the old one's vectors.
Stopping (the server's shutdown, or the interpreter's exit) waits for the call under way: a
thread killed inside onnxruntime aborts the process.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from qa.embedding.cache import SENTENCES_FILE, EmbeddingCache, open_cache, text_hash

if TYPE_CHECKING:
    from qa.embedding.models import Embedder
    from qa.pipeline import Pipeline
    from qa.server.admission import Gate
    from qa.types import Chunk

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.02  # how often a waiting warm-up looks for an idle gate again
# Sentences looked up on disk at a time (each lookup is one SQLite transaction), and per
# encoder call for the ones missing. All lookups come first: one batch that waited for an idle
# core held back the kept vectors behind it (a restart asked question after question).
_LOOKUP_TEXTS = 256
_ENCODE_TEXTS = 8
_JOIN_S = 30.0  # the longest a stop waits for the encoder call under way (~0.1 s)
_ALL: weakref.WeakSet[Warmup] = weakref.WeakSet()


class Warmup:
    """Makes the sentence vectors of the pipeline being served, in the background."""

    def __init__(self, gate: Gate, limit: int) -> None:
        self.limit = limit
        self.sentences = 0  # read back or embedded by the current run, once it is done
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
            answerer = pipeline.answerer()
            n_chunks = pipeline.store.n_chunks
            if not isinstance(answerer, Warmable) or self.limit <= 0 or not n_chunks:
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
                target=self._run, args=(pipeline, answerer, stop), name="qa-warm", daemon=True
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

    def _run(self, pipeline: Pipeline, answerer: Warmable, stop: threading.Event) -> None:
        t0 = time.perf_counter()
        cache = None
        read = embedded = 0
        try:
            texts = answerer.warm_texts(pipeline.store.chunks(), limit=self.limit)
            # Opened here: an SQLite connection stays on the thread that made it.
            settings = pipeline.settings
            cache = open_cache(settings, settings.index_dir, pipeline.embedder, file=SENTENCES_FILE)
            missing = self._read_back(texts, answerer, cache, stop)
            read = len(texts) - len(missing)
            embedded = self._embed(missing, answerer, pipeline.embedder, cache, stop)
            if cache is not None:
                cache.prune()
        except Exception:  # best effort: questions embed their sentences as they come
            log.exception("Embedding sentences ahead of questions failed; carrying on without")
        finally:
            if cache is not None:
                cache.close()
        with self._lock:
            if stop.is_set():  # stopped, or a newer pipeline's run owns the counters now
                return
            self.sentences, self.running = read + embedded, False
        log.info(
            "Sentence vectors ready ahead of questions: %d read from %s, %d embedded, in %.1f s.",
            read,
            SENTENCES_FILE,
            embedded,
            time.perf_counter() - t0,
        )

    @staticmethod
    def _read_back(
        texts: list[str], answerer: Warmable, cache: EmbeddingCache | None, stop: threading.Event
    ) -> list[str]:
        """Hand over the vectors kept on disk (no idle core needed); the texts still missing."""
        if cache is None:
            return texts
        missing: list[str] = []
        for i in range(0, len(texts), _LOOKUP_TEXTS):
            if stop.is_set():
                break
            part = texts[i : i + _LOOKUP_TEXTS]
            hashes = [text_hash(t) for t in part]
            found = cache.get(hashes)
            hits = [(t, found[h]) for t, h in zip(part, hashes, strict=True) if h in found]
            if hits:
                answerer.remember([t for t, _ in hits], np.stack([v for _, v in hits]))
            missing.extend(t for t, h in zip(part, hashes, strict=True) if h not in found)
        return missing

    def _embed(
        self,
        texts: list[str],
        answerer: Warmable,
        embedder: Embedder,
        cache: EmbeddingCache | None,
        stop: threading.Event,
    ) -> int:
        """Embed `texts`, one short encoder call at a time, each once the cores are idle."""
        for i in range(0, len(texts), _ENCODE_TEXTS):
            while any(busy() for busy in self._busy):
                if stop.wait(_IDLE_POLL_S):
                    return i
            if stop.is_set():
                return i
            batch = texts[i : i + _ENCODE_TEXTS]
            vectors = embedder.embed_documents(batch)
            answerer.remember(batch, vectors)
            if cache is not None:
                cache.put([text_hash(t) for t in batch], vectors)
        return len(texts)


@runtime_checkable
class Warmable(Protocol):
    """An answerer with vectors to make before any question (see qa.answering.registry)."""

    def warm_texts(self, chunks: Iterable[Chunk], *, limit: int) -> list[str]: ...

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None: ...


@atexit.register
def _stop_all() -> None:
    for warmup in list(_ALL):
        warmup.stop()
