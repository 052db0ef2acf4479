"""Updating an index folder: keep the chunks and vectors of unchanged documents, add the rest.

The result is laid out exactly as a full rebuild would be (documents by id, chunks in text
order), so both give the same index. Nothing is written until `write` has every vector, and the
write swaps a complete folder in (`FaissStore.write`), so an interrupted ingest leaves the
previous index untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from qa.config import Settings
from qa.errors import QAError
from qa.stores.base import IndexUpdate, Previous, Written
from qa.stores.bm25 import INFO as BM25_INFO
from qa.stores.faiss.index import resolve_index_type
from qa.stores.faiss.store import FaissStore
from qa.stores.folder import build_differences, read_manifest
from qa.types import Chunk, Document

log = logging.getLogger(__name__)


class FaissWriter:
    """One update of the index folder at `index_dir` by a build described by `manifest`."""

    def __init__(
        self, index_dir: Path, settings: Settings, manifest: Mapping[str, Any], *, rebuild: bool
    ) -> None:
        self.index_dir = index_dir
        self.settings = settings
        self._old, reason = _previous(index_dir, settings, dict(manifest), rebuild)
        old = self._old
        self.previous = Previous(
            hashes=dict(old.manifest.get("documents", {})) if old else {},
            n_chunks=old.n_chunks if old else 0,
            reason=reason,
        )

    def write(self, update: IndexUpdate) -> Written:
        old = self._old
        current = {d.id for d in update.documents}
        reused = _reusable(old, current - update.fresh_ids)
        chunks, sources = _layout(update.documents, update.chunks, reused)
        vectors = _gather(sources, update.vectors, old.vectors if old else None)
        removed = self.previous.hashes.keys() - current
        files = dict(update.files)
        up_to_date = (
            old is not None
            and not update.fresh_ids
            and not removed
            and _same_build(old, files, self.settings)
        )
        if old is not None:
            old.close()
            self._old = None
        if not up_to_date:
            FaissStore.write(
                self.index_dir,
                documents=update.documents,
                chunks=chunks,
                vectors=vectors,
                manifest=dict(update.manifest),
                settings=self.settings,
                files=files,
            )
        return Written(n_chunks=len(chunks), written=not up_to_date)

    def __enter__(self) -> FaissWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._old is not None:
            self._old.close()
            self._old = None


def _previous(
    index_dir: Path, settings: Settings, wanted: dict[str, Any], rebuild: bool
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
    diffs = build_differences(manifest, wanted)
    if diffs:
        reason = "settings changed: " + "; ".join(f"{f} {a!r} -> {b!r}" for f, a, b in diffs)
        log.info("Rebuilding %s fully (%s)", index_dir, reason)
        return None, reason
    try:
        return FaissStore.load(index_dir, settings, dim=wanted["dim"]), "incremental update"
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
    fresh: Sequence[Chunk],
    reused: dict[str, list[tuple[int, Chunk]]],
) -> tuple[list[Chunk], list[int]]:
    """Chunks in final order (documents by id, chunks in text order), and where each one's
    vector comes from: old row >= 0, or -1 - i for the i-th fresh chunk."""
    fresh_of: dict[str, list[tuple[int, Chunk]]] = {}
    for i, c in enumerate(fresh):
        fresh_of.setdefault(c.doc_id, []).append((-1 - i, c))
    chunks: list[Chunk] = []
    sources: list[int] = []
    for doc in documents:
        for source, c in fresh_of.get(doc.id) or reused.get(doc.id, []):
            chunks.append(c)
            sources.append(source)
    return chunks, sources


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
