"""The index folder: FAISS index + vectors + SQLite chunk store + manifest.json.

    index/
      index.faiss     inner-product FAISS index; row i is chunk row i
      vectors.npy     float32 (n, dim) normalised vectors (re-indexing, rescoring; mmap-able)
      store.sqlite    documents and chunks tables (chunks.row = FAISS row)
      bm25/           BM25 keyword index over the same chunks (position = row; qa.stores.bm25)
      manifest.json   how it was built: model, dim, encoding, chunking, index type, hashes, versions

Writes go to a temporary folder next to the index, then replace it by rename: a failure
part-way leaves the previous index as it was. Loading compares the manifest with the settings
and refuses a mismatch. Metadata is JSON and SQLite only, never pickle. The folder layout,
manifest and atomic swap live in `qa.stores.folder`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.config import Settings
from qa.errors import DocumentNotFoundError, IndexMismatchError, IndexNotFoundError
from qa.stores.bm25 import INFO as BM25_INFO
from qa.stores.bm25 import PARAMS_FILE as BM25_PARAMS_FILE
from qa.stores.bm25 import Bm25Index
from qa.stores.faiss.index import build_faiss, tune
from qa.stores.folder import (
    BM25_DIR,
    CALIBRATION_FILE,
    DB_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    VECTORS_FILE,
    fsync,
    manifest_differences,
    read_manifest,
    recover,
    swap_in,
    versions,
)
from qa.types import Chunk, Document, DocumentInfo, embedding_text

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

_CHUNK_COLUMNS = 'row, id, doc_id, title, text, start, "end", n_tokens, page'
_SCHEMA = """
CREATE TABLE documents (id TEXT PRIMARY KEY, title TEXT NOT NULL, source TEXT NOT NULL,
    text TEXT NOT NULL, content_hash TEXT NOT NULL, pages TEXT NOT NULL);
CREATE TABLE chunks (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL,
    title TEXT NOT NULL, text TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL, page INTEGER);
CREATE INDEX chunks_doc_id ON chunks (doc_id);
"""


class FaissStore:
    """A loaded index folder; searching and reading are safe from many threads."""

    def __init__(
        self,
        index_dir: Path,
        manifest: dict[str, Any],
        index: faiss.Index,
        vectors: np.ndarray,
        db: sqlite3.Connection,
        bm25: Bm25Index,
        rows: VectorRows | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.manifest = manifest
        self.vectors = vectors
        self._rows = rows
        self.bm25 = bm25
        self._index = index
        self._db = db
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------

    @staticmethod
    def write(
        index_dir: Path,
        *,
        documents: Sequence[Document],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        manifest: dict[str, Any],
        settings: Settings,
        files: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Build the folder in a temp dir beside `index_dir`, then swap it in; returns the manifest.

        Chunk i must be vector row i; chunks of a document must follow that document's order.
        """
        index_dir = Path(index_dir)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but vectors of shape {vectors.shape}")
        index, index_info = build_faiss(vectors, settings)
        full = {
            **manifest,
            "dim": int(vectors.shape[1]),
            "index": index_info,
            "bm25": BM25_INFO,
            "counts": {
                "documents": len(documents),
                "chunks": len(chunks),
                "files": len(files or {}),
            },
            "files": dict(sorted((files or {}).items())),
            "documents": {d.id: d.content_hash for d in documents},
            "versions": versions(),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.tmp-", dir=index_dir.parent))
        try:
            import faiss

            faiss.write_index(index, str(tmp / INDEX_FILE))
            np.save(tmp / VECTORS_FILE, vectors)
            _write_sqlite(tmp / DB_FILE, documents, chunks)
            Bm25Index.build([embedding_text(c) for c in chunks]).save(tmp / BM25_DIR)
            # The manifest goes last: a folder with a manifest is a complete one.
            (tmp / MANIFEST_FILE).write_text(json.dumps(full, indent=2), encoding="utf-8")
            if (index_dir / CALIBRATION_FILE).is_file():
                # The user's `qa calibrate` choice outlives a rebuild of the same folder.
                shutil.copyfile(index_dir / CALIBRATION_FILE, tmp / CALIBRATION_FILE)
                log.info(
                    "Kept %s; run `qa calibrate` again if the corpus changed", CALIBRATION_FILE
                )
            bm25_files = [str(p.relative_to(tmp)) for p in (tmp / BM25_DIR).iterdir()]
            for name in (INDEX_FILE, VECTORS_FILE, DB_FILE, MANIFEST_FILE, *bm25_files):
                fsync(tmp / name)
            swap_in(tmp, index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("Wrote %s: %d documents, %d chunks", index_dir, len(documents), len(chunks))
        return full

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, index_dir: Path, settings: Settings, *, dim: int | None = None) -> FaissStore:
        """Open the index at `index_dir`, refusing one built with other settings."""
        import faiss

        index_dir = Path(index_dir)
        recover(index_dir)
        manifest = read_manifest(index_dir)
        if manifest is None:
            raise IndexNotFoundError(f"No index at {index_dir}/. Run `qa index` first.")
        diffs = manifest_differences(manifest, settings, dim=dim)
        if diffs:
            detail = "; ".join(f"{f}: index has {a!r}, settings say {b!r}" for f, a, b in diffs)
            raise IndexMismatchError(
                f"The index at {index_dir}/ was built with other settings ({detail}). "
                f"Run `qa index --rebuild` (or delete {index_dir}/), or change the settings back."
            )
        missing = [n for n in (INDEX_FILE, VECTORS_FILE, DB_FILE) if not (index_dir / n).is_file()]
        if missing:
            raise IndexNotFoundError(
                f"The index at {index_dir}/ is incomplete (missing {', '.join(missing)}). "
                "Run `qa index --rebuild`."
            )
        try:
            # Vector codes memory-mapped, not copied: RSS grows only with the pages searches
            # touch, and start-up does not read them (bench/scale.py, 1M chunks).
            index = faiss.read_index(str(index_dir / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC)
            vectors = np.load(index_dir / VECTORS_FILE, mmap_mode="r")
            plain = vectors.ndim == 2 and vectors.dtype == np.float32 and vectors.flags.c_contiguous
            rows = VectorRows(index_dir / VECTORS_FILE, vectors) if plain else None
            db_uri = (index_dir / DB_FILE).resolve().as_uri() + "?mode=ro"
            db = sqlite3.connect(db_uri, uri=True, check_same_thread=False)
            (n_rows,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        except (RuntimeError, ValueError, OSError, sqlite3.DatabaseError) as exc:
            # FAISS reports a damaged file as RuntimeError, numpy as ValueError.
            raise IndexMismatchError(
                f"The index at {index_dir}/ is damaged ({type(exc).__name__}: {exc}). "
                "Run `qa index --rebuild`."
            ) from None
        tune(index, settings)
        bm25 = _load_bm25(index_dir, db)
        if not index.ntotal == vectors.shape[0] == n_rows == bm25.n_docs:
            db.close()
            raise IndexMismatchError(
                f"The index at {index_dir}/ is inconsistent ({index.ntotal} FAISS rows, "
                f"{vectors.shape[0]} vectors, {n_rows} chunks, {bm25.n_docs} BM25 rows). "
                "Run `qa index --rebuild`."
            )
        return cls(index_dir, manifest, index, vectors, db, bm25, rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- searching ----------------------------------------------------------------------

    @property
    def n_chunks(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, query_vec: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        """The k chunks with the highest inner product with `query_vec`, best first."""
        query = np.asarray(query_vec, dtype=np.float32)
        if query.ndim == 2 and query.shape[0] != 1:
            raise ValueError(f"search takes one query, got shape {query.shape}; use search_batch")
        return self.search_batch(query.reshape(1, -1), k)[0]

    def search_batch(self, queries: np.ndarray, k: int) -> list[list[tuple[Chunk, float]]]:
        """`search` for each row of an (m, dim) matrix, in one FAISS call."""
        matrix = np.ascontiguousarray(queries, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}), got {matrix.shape}")
        if k < 1 or self.n_chunks == 0:
            return [[] for _ in range(matrix.shape[0])]
        scores, rows = self._index.search(matrix, min(k, self.n_chunks))
        by_row = self._chunks_at({int(r) for r in rows.ravel() if r >= 0})
        return [
            [(by_row[int(r)], float(s)) for r, s in zip(row_ids, row_scores, strict=True) if r >= 0]
            for row_ids, row_scores in zip(rows, scores, strict=True)
        ]

    def keyword_search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """The k best chunks by BM25 score (only chunks sharing a term with the query)."""
        hits = self.bm25.search(query, k)
        by_row = self._chunks_at(row for row, _ in hits)
        return [(by_row[row], score) for row, score in hits]

    def chunk_vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these chunks, one row per id, in the order given."""
        rows = self.rows_of(chunk_ids)
        wanted = [rows[c] for c in chunk_ids]
        if self._rows is not None:
            return self._rows.read(wanted)
        return np.asarray(self.vectors[wanted], dtype=np.float32)

    def rows_of(self, chunk_ids: Iterable[str]) -> dict[str, int]:
        """The FAISS row of each chunk id (DocumentNotFoundError for an unknown id)."""
        wanted = sorted(set(chunk_ids))
        found: dict[str, int] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            sql = f"SELECT id, row FROM chunks WHERE id IN ({','.join('?' * len(part))})"
            found.update((str(r[0]), int(r[1])) for r in self._query(sql, part))
        missing = [c for c in wanted if c not in found]
        if missing:
            raise DocumentNotFoundError(
                f"No chunk {missing[0]!r} in the index at {self.index_dir}/."
            )
        return found

    # -- reading ------------------------------------------------------------------------

    def document(self, doc_id: str) -> Document:
        """The document with id `doc_id`; DocumentNotFoundError if it is not indexed."""
        rows = self._query("SELECT * FROM documents WHERE id = ?", (doc_id,))
        if not rows:
            raise DocumentNotFoundError(
                f"No document {doc_id!r} in the index at {self.index_dir}/."
            )
        return _document(rows[0])

    def documents(self) -> tuple[Document, ...]:
        """Every indexed document, sorted by id."""
        return tuple(_document(r) for r in self._query("SELECT * FROM documents ORDER BY id"))

    def document_list(self) -> tuple[DocumentInfo, ...]:
        """Every document's id, title, source, page and chunk counts, sorted by id."""
        rows = self._query(
            "SELECT d.id, d.title, d.source, d.pages, COUNT(c.row) FROM documents d "
            "LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.id"
        )
        return tuple(
            DocumentInfo(doc_id, title, source, len(json.loads(pages)), int(n))
            for doc_id, title, source, pages, n in rows
        )

    def chunk(self, chunk_id: str) -> Chunk:
        """The chunk with id `chunk_id`; DocumentNotFoundError if it is not indexed."""
        rows = self._query(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id = ?", (chunk_id,))
        if not rows:
            raise DocumentNotFoundError(f"No chunk {chunk_id!r} in the index at {self.index_dir}/.")
        return _chunk(rows[0])

    def chunks(self) -> tuple[Chunk, ...]:
        """Every chunk in FAISS row order (chunk i has vector i)."""
        return tuple(
            _chunk(r) for r in self._query(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY row")
        )

    def _chunks_at(self, rows: Iterable[int]) -> dict[int, Chunk]:
        wanted = sorted(rows)
        found: dict[int, Chunk] = {}
        for i in range(0, len(wanted), 500):  # stay far below SQLite's bound-variable limit
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE row IN ({marks})"
            found.update((r[0], _chunk(r)) for r in self._query(sql, part))
        return found

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # One connection shared by the server's worker threads: serialise its use.
        with self._lock:
            return self._db.execute(sql, params).fetchall()


def _chunk(row: tuple[Any, ...]) -> Chunk:
    _, cid, doc_id, title, text, start, end, n_tokens, page = row
    return Chunk(cid, doc_id, title, text, start, end, n_tokens, page)


def _document(row: tuple[Any, ...]) -> Document:
    doc_id, title, source, text, content_hash, pages = row
    return Document(doc_id, title, text, source, content_hash, tuple(json.loads(pages)))


def _write_sqlite(path: Path, documents: Sequence[Document], chunks: Sequence[Chunk]) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(_SCHEMA)
        db.executemany(
            "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
            (
                (d.id, d.title, d.source, d.text, d.content_hash, json.dumps(d.pages))
                for d in documents
            ),
        )
        db.executemany(
            f"INSERT INTO chunks ({_CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (i, c.id, c.doc_id, c.title, c.text, c.start, c.end, c.n_tokens, c.page)
                for i, c in enumerate(chunks)
            ),
        )
        db.commit()
    finally:
        db.close()


class VectorRows:
    """Rows of vectors.npy read with pread from a descriptor opened at load, not through the
    memory map: a mapped read faults in (and keeps counted in RSS) the 64 KB around each
    1.5 KB row, so over a large index a few hundred questions would leave most of the file
    resident in the server. The descriptor keeps reading the file loaded, even after a swap."""

    def __init__(self, path: Path, vectors: np.ndarray) -> None:
        self._dim = int(vectors.shape[1])
        self._offset = int(getattr(vectors, "offset", 0))
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def read(self, rows: Sequence[int]) -> np.ndarray:
        out = np.empty((len(rows), self._dim), dtype=np.float32)
        width = self._dim * 4
        for i, row in enumerate(rows):
            if os.preadv(self._fd, [out[i]], self._offset + row * width) != width:
                raise IndexMismatchError(
                    f"vectors.npy has no row {row} (the file is cut short). "
                    "Run `qa index --rebuild`."
                )
        return out


def _load_bm25(index_dir: Path, db: sqlite3.Connection) -> Bm25Index:
    """The saved BM25 index, or one built now for a folder written before BM25 existed."""
    if (index_dir / BM25_DIR / BM25_PARAMS_FILE).is_file():
        return Bm25Index.load(index_dir / BM25_DIR, mmap=True)
    log.warning(
        "The index at %s/ has no BM25 keyword index; building one in memory. "
        "Run `qa index` once to save it.",
        index_dir,
    )
    rows = db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY row").fetchall()
    return Bm25Index.build([embedding_text(_chunk(r)) for r in rows])
