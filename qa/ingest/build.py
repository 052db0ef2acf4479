"""Build or update an index in one pass: read -> chunk -> embed (cache) -> hand to the store.

Incremental by default: the store says what it holds (`Previous`: content hash per document,
or nothing when it must be rebuilt) and only new and changed documents are chunked and
embedded; unchanged ones keep their chunks and vectors, deleted ones disappear. The store
decides how to persist the `IndexUpdate` (a complete index folder swapped in, or one Postgres
transaction) and whether its index can be updated in place, so an interrupted run (Ctrl-C
during embedding) leaves the previous index untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.config import Settings
from qa.embedding.cache import (
    EmbeddingCache,
    SliceDone,
    cache_dir_for,
    embed_with_cache,
    open_cache,
)
from qa.embedding.models import Embedder
from qa.ingest.chunking import CHUNKER_VERSION, Chunker
from qa.ingest.ocr import OcrOptions
from qa.ingest.readers import Skipped, load_corpus
from qa.ingest.tokens import get_encoding
from qa.stores import open_writer
from qa.stores.base import IndexUpdate
from qa.stores.folder import base_manifest
from qa.types import embedding_text

if TYPE_CHECKING:
    from rich.progress import Task
    from rich.text import Text

log = logging.getLogger(__name__)

# Below this many chunks a progress bar is more noise than help.
_PROGRESS_MIN_CHUNKS = 256
# Texts handed to the embedder per call: large enough for its length-sorting to pay off.
_SLICE_BATCHES = 16


@dataclass(frozen=True)
class IndexReport:
    """What `build_index` did; counts of documents unless named otherwise."""

    added: int
    changed: int
    removed: int
    unchanged: int
    n_documents: int
    n_chunks: int
    n_embedded: int
    skipped: tuple[Skipped, ...]
    seconds: float
    index_dir: Path
    full_rebuild: bool
    reason: str
    written: bool


def build_index(
    settings: Settings,
    *,
    embedder: Embedder,
    corpus_dir: Path | None = None,
    index_dir: Path | None = None,
    rebuild: bool = False,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    on_pages: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Index the corpus folder into the settings' store (incrementally unless `rebuild`).

    `on_progress(done, total)` counts the chunks to embed, `on_pages(done, total)` the scanned
    pages to read by OCR before that (a server's job reports both); `progress` draws both.
    """
    started = time.perf_counter()
    corpus_dir = Path(corpus_dir or settings.corpus_dir)
    index_dir = Path(index_dir or settings.index_dir)
    with _pages_bar(progress, on_pages) as pages:
        corpus = load_corpus(
            corpus_dir,
            ocr=OcrOptions.of(settings),
            # Recognised text is kept beside the index, as vectors are: a scan is read once.
            ocr_cache=cache_dir_for(index_dir) / "ocr",
            on_pages=pages,
        )
    manifest = index_manifest(settings, embedder, corpus_dir)
    with open_writer(settings, manifest, index_dir=index_dir, rebuild=rebuild) as writer:
        old = writer.previous
        fresh_docs = [d for d in corpus.documents if old.hashes.get(d.id) != d.content_hash]
        chunks = tuple(
            c for doc in make_chunker(settings, embedder).chunk_documents(fresh_docs) for c in doc
        )
        log.info("%d documents to (re)index: %d chunks to embed", len(fresh_docs), len(chunks))
        # The embedding cache (beside the index folder, whatever the store) spares re-embedding
        # text seen before: an edited document, a rebuild, a switch between stores.
        cache = open_cache(settings, index_dir, embedder, rows=len(chunks) + old.n_chunks)
        tick = _counter(len(chunks), on_progress)
        vectors = embed_texts(
            embedder, [embedding_text(c) for c in chunks], progress=progress, cache=cache, tick=tick
        )
        if on_progress is not None:
            on_progress(len(chunks), len(chunks))  # cache hits are never ticked
        done = writer.write(
            IndexUpdate(
                documents=corpus.documents,
                fresh_ids=frozenset(d.id for d in fresh_docs),
                chunks=chunks,
                vectors=vectors,
                files={f.path: f.content_hash for f in corpus.files},
                manifest=manifest,
            )
        )
    added = sum(1 for d in fresh_docs if d.id not in old.hashes)
    removed = len(old.hashes.keys() - {d.id for d in corpus.documents})
    report = IndexReport(
        added=added,
        changed=len(fresh_docs) - added,
        removed=removed,
        unchanged=len(corpus.documents) - len(fresh_docs),
        n_documents=len(corpus.documents),
        n_chunks=done.n_chunks,
        n_embedded=len(chunks),
        skipped=corpus.skipped,
        seconds=time.perf_counter() - started,
        index_dir=index_dir,
        full_rebuild=old.full,
        reason=old.reason,
        written=done.written,
    )
    log.info(
        "Indexed %d documents (%d added, %d changed, %d removed, %d unchanged) into %d chunks; "
        "embedded %d in %.1f s",
        report.n_documents, added, report.changed, removed, report.unchanged, done.n_chunks,
        len(chunks), report.seconds,
    )  # fmt: skip
    return report


def _counter(
    total: int, on_progress: Callable[[int, int], None] | None
) -> Callable[[int], None] | None:
    """A `tick(n)` adding n embedded chunks to the count `on_progress` receives."""
    if on_progress is None:
        return None
    done = 0
    on_progress(0, total)

    def tick(n: int) -> None:
        nonlocal done
        done = min(done + n, total)
        on_progress(done, total)

    return tick


def index_manifest(settings: Settings, embedder: Embedder, corpus_dir: Path) -> dict[str, Any]:
    """How an index of `corpus_dir` is built with these settings (any store writes it)."""
    return base_manifest(
        settings,
        model=embedder.name,
        dim=embedder.dim,
        model_token_limit=embedder.max_tokens,
        chunker=CHUNKER_VERSION,
        corpus_dir=str(corpus_dir),
        # What actually made the vectors (settings may say `auto`).
        embedding_backend=getattr(embedder, "backend", settings.embedding_backend),
        embedding_dtype=getattr(embedder, "dtype", settings.embedding_dtype),
    )


def make_chunker(settings: Settings, embedder: Embedder) -> Chunker:
    """The Chunker of these settings, bound to the embedder's own token limit."""
    return Chunker(
        get_encoding(settings.encoding),
        chunk_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        model_token_limit=embedder.max_tokens,
        count_model_tokens=embedder.count_tokens,
    )


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    progress: bool,
    cache: EmbeddingCache | None = None,
    done: SliceDone | None = None,
    tick: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Vectors of `texts`: cached ones looked up, the rest embedded longest first in large
    slices (little padding waste), each slice added to the cache (or passed to `done`)."""
    if cache is not None:
        try:
            vectors = embed_with_cache(
                cache,
                texts,
                lambda todo, done: embed_texts(
                    embedder, todo, progress=progress, done=done, tick=tick
                ),
                embedder.dim,
            )
            log.info("Embedding cache: %d hits, %d misses", cache.hits, cache.misses)
            cache.prune()
            return vectors
        finally:
            cache.close()
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    batch = int(getattr(embedder, "batch_size", 32))
    step = max(batch * _SLICE_BATCHES, 1)
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    bar = _progress_bar() if progress and len(texts) >= _PROGRESS_MIN_CHUNKS else None
    try:
        task = bar.add_task("Embedding", total=len(texts)) if bar else None
        if bar:
            bar.start()
        for lo in range(0, len(order), step):
            idx = order[lo : lo + step]
            out[idx] = embedder.embed_documents([texts[i] for i in idx])
            if done is not None:
                done(idx, out[idx])
            if tick is not None:
                tick(len(idx))
            if bar and task is not None:
                bar.advance(task, len(idx))
    finally:
        if bar:
            bar.stop()
    return out


@contextmanager
def _pages_bar(
    draw: bool, on_pages: Callable[[int, int], None] | None
) -> Iterator[Callable[[int, int], None] | None]:
    """`on_pages`, also drawing a bar of the pages read by OCR when `draw` (`qa index`)."""
    if not draw:
        yield on_pages
        return
    bar = _progress_bar("pages")
    task: Any = None

    def pages(done: int, total: int) -> None:
        nonlocal task
        if on_pages is not None:
            on_pages(done, total)
        if task is None and total:
            task = bar.add_task("Reading scans (OCR)", total=total)
            bar.start()
        if task is not None:
            bar.update(task, completed=done)

    try:
        yield pages
    finally:
        bar.stop()


def _progress_bar(unit: str = "chunks") -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            from rich.text import Text

            # Average since the start: rich's own speed is a short moving window.
            elapsed = task.elapsed or 0.0
            rate = f"{task.completed / elapsed:.2f}" if elapsed > 0 and task.completed else "-"
            return Text(f"{rate} {unit}/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
