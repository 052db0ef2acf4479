"""Build or update the index folder: corpus -> chunks -> vectors -> store.

Incremental by default: when an index built with the same model and chunking exists, documents
whose content hash is unchanged keep their chunks and vectors; only new and changed documents
are chunked and embedded, deleted ones disappear. The result is laid out exactly as a full
rebuild would be (documents by id, chunks in text order), so both give the same index.
Nothing is written until every vector exists, and the write swaps a complete folder in, so an
interrupted run (Ctrl-C during embedding) leaves the previous index untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.config import Settings
from qa.embedding.cache import EmbeddingCache, SliceDone, embed_with_cache, open_cache
from qa.embedding.models import Embedder
from qa.errors import QAError
from qa.ingest.chunking import CHUNKER_VERSION, Chunker
from qa.ingest.readers import Skipped, load_corpus
from qa.ingest.tokens import get_encoding
from qa.stores.bm25 import INFO as BM25_INFO
from qa.stores.faiss.store import FaissStore, resolve_index_type
from qa.stores.folder import base_manifest, manifest_differences, read_manifest
from qa.types import Chunk, Document, embedding_text

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
) -> IndexReport:
    """Index the corpus folder into the index folder (incrementally unless `rebuild`)."""
    if settings.store == "postgres":
        from qa.stores.postgres.sync import sync_index

        return sync_index(
            settings, embedder=embedder, corpus_dir=corpus_dir, rebuild=rebuild, progress=progress
        )
    started = time.perf_counter()
    corpus_dir = Path(corpus_dir or settings.corpus_dir)
    index_dir = Path(index_dir or settings.index_dir)
    corpus = load_corpus(corpus_dir)
    old, reason = _previous(index_dir, settings, embedder, rebuild)
    try:
        old_hashes: dict[str, str] = dict(old.manifest.get("documents", {})) if old else {}
        fresh_docs = [d for d in corpus.documents if old_hashes.get(d.id) != d.content_hash]
        chunks_of = make_chunker(settings, embedder).chunk_documents(fresh_docs)
        fresh = dict(zip([d.id for d in fresh_docs], chunks_of, strict=True))
        reused = _reusable(old, {d.id for d in corpus.documents} - fresh.keys())
        chunks, sources, to_embed = _layout(corpus.documents, fresh, reused)
        log.info("%d chunks, %d to embed", len(chunks), len(to_embed))
        new_vectors = embed_texts(
            embedder,
            to_embed,
            progress=progress,
            cache=open_cache(settings, index_dir, embedder, rows=len(chunks)),
        )
        vectors = _gather(sources, new_vectors, old.vectors if old else None)
        files = {f.path: f.content_hash for f in corpus.files}
        removed = len(old_hashes.keys() - {d.id for d in corpus.documents})
        up_to_date = (
            old is not None and not fresh_docs and not removed and _same_build(old, files, settings)
        )
    finally:
        if old is not None:
            old.close()
    if not up_to_date:
        manifest = index_manifest(settings, embedder, corpus_dir)
        FaissStore.write(
            index_dir,
            documents=corpus.documents,
            chunks=chunks,
            vectors=vectors,
            manifest=manifest,
            settings=settings,
            files=files,
        )
    added = sum(1 for d in fresh_docs if d.id not in old_hashes)
    changed = len(fresh_docs) - added
    report = IndexReport(
        added=added,
        changed=changed,
        removed=removed,
        unchanged=len(corpus.documents) - len(fresh_docs),
        n_documents=len(corpus.documents),
        n_chunks=len(chunks),
        n_embedded=len(to_embed),
        skipped=corpus.skipped,
        seconds=time.perf_counter() - started,
        index_dir=index_dir,
        full_rebuild=old is None,
        reason=reason,
        written=not up_to_date,
    )
    log.info(
        "Indexed %d documents (%d added, %d changed, %d removed, %d unchanged) into %d chunks; "
        "embedded %d in %.1f s",
        report.n_documents, added, changed, removed, report.unchanged, len(chunks),
        len(to_embed), report.seconds,
    )  # fmt: skip
    return report


def index_manifest(settings: Settings, embedder: Embedder, corpus_dir: Path) -> dict[str, Any]:
    """How an index of `corpus_dir` is built with these settings (any store writes it)."""
    return base_manifest(
        settings,
        model=embedder.name,
        dim=embedder.dim,
        model_token_limit=embedder.max_tokens,
        chunker=CHUNKER_VERSION,
        corpus_dir=str(corpus_dir),
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


def _previous(
    index_dir: Path, settings: Settings, embedder: Embedder, rebuild: bool
) -> tuple[FaissStore | None, str]:
    """The existing index if it can be updated in place, else None and why not."""
    if rebuild:
        return None, "rebuild requested"
    try:
        manifest = read_manifest(index_dir)
    except QAError as exc:
        log.warning("Rebuilding %s fully: %s", index_dir, exc)
        return None, f"old index unreadable: {exc}"
    if manifest is None:
        return None, f"no index at {index_dir}/"
    diffs = manifest_differences(manifest, settings, dim=embedder.dim)
    # Chunks are reused only if this code would cut the same ones; vectors only if this
    # backend and dtype made them (the embedding cache still spares re-embedding on the way back).
    for field, before, now in (
        ("model_token_limit", manifest.get("model_token_limit"), embedder.max_tokens),
        ("chunker", manifest.get("chunker"), CHUNKER_VERSION),
        (
            "embedding_backend",
            manifest.get("embedding_backend", "torch"),
            settings.embedding_backend,
        ),
        ("embedding_dtype", manifest.get("embedding_dtype", "float32"), settings.embedding_dtype),
    ):
        if before != now:
            diffs.append((field, before, now))
    if diffs:
        reason = "settings changed: " + "; ".join(f"{f} {a!r} -> {b!r}" for f, a, b in diffs)
        log.info("Rebuilding %s fully (%s)", index_dir, reason)
        return None, reason
    try:
        return FaissStore.load(index_dir, settings, dim=embedder.dim), "incremental update"
    except QAError as exc:
        log.warning("Rebuilding %s fully: the old index cannot be read (%s)", index_dir, exc)
        return None, f"old index unreadable: {exc}"


def _reusable(old: FaissStore | None, keep: set[str]) -> dict[str, list[tuple[int, Chunk]]]:
    """doc id -> [(old vector row, chunk)] for the documents whose chunks are kept."""
    by_doc: dict[str, list[tuple[int, Chunk]]] = {doc_id: [] for doc_id in keep}
    if old is not None:
        for row, c in enumerate(old.chunks()):
            if c.doc_id in by_doc:
                by_doc[c.doc_id].append((row, c))
    return by_doc


def _layout(
    documents: Sequence[Document],
    fresh: dict[str, tuple[Chunk, ...]],
    reused: dict[str, list[tuple[int, Chunk]]],
) -> tuple[list[Chunk], list[int], list[str]]:
    """Chunks in final order (documents by id, chunks in text order), where each one's vector
    comes from (old row >= 0, or -1 - i for the i-th text to embed), and the texts to embed."""
    chunks: list[Chunk] = []
    sources: list[int] = []
    to_embed: list[str] = []
    for doc in documents:
        if doc.id in fresh:
            for c in fresh[doc.id]:
                chunks.append(c)
                sources.append(-1 - len(to_embed))
                to_embed.append(embedding_text(c))
        else:
            for row, c in reused[doc.id]:
                chunks.append(c)
                sources.append(row)
    return chunks, sources, to_embed


def _gather(sources: list[int], new: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    """The vector matrix in chunk order, from old rows and freshly embedded ones."""
    src = np.asarray(sources, dtype=np.int64)
    vectors = np.empty((len(src), new.shape[1]), dtype=np.float32)
    kept = src >= 0
    if kept.any():
        assert old is not None
        vectors[kept] = old[src[kept]]
    vectors[~kept] = new[-1 - src[~kept]]
    return vectors


def _same_build(old: FaissStore, files: dict[str, str], settings: Settings) -> bool:
    """True when rewriting would produce the same files (nothing to do)."""
    info: dict[str, Any] = old.manifest.get("index", {})
    wanted = resolve_index_type(old.n_chunks, settings)
    return (
        old.manifest.get("files") == files
        and info.get("requested") == settings.index_type
        and info.get("type") == wanted
        and (wanted != "hnsw" or info.get("params", {}).get("M") == settings.hnsw_m)
        and old.manifest.get("bm25") == BM25_INFO
    )


def embed_texts(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    progress: bool,
    cache: EmbeddingCache | None = None,
    done: SliceDone | None = None,
) -> np.ndarray:
    """Vectors of `texts`: cached ones looked up, the rest embedded longest first in large
    slices (little padding waste), each slice added to the cache (or passed to `done`)."""
    if cache is not None:
        try:
            vectors = embed_with_cache(
                cache,
                texts,
                lambda todo, done: embed_texts(embedder, todo, progress=progress, done=done),
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
            if bar and task is not None:
                bar.advance(task, len(idx))
    finally:
        if bar:
            bar.stop()
    return out


def _progress_bar() -> Any:
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
            rate = f"{task.completed / elapsed:.1f}" if elapsed > 0 and task.completed else "-"
            return Text(f"{rate} chunks/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
