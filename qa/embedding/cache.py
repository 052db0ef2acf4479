"""A cache of embedding vectors, so re-indexing embeds only text it has not seen.

One SQLite file beside the index folder (`<index_dir>.cache/embeddings.sqlite`, outside the
folder that writes swap atomically). A vector is keyed by the space it lives in (model, and
backend + dtype as `vector_space` names them: torch fp32 and ONNX fp32 share rows) and the
sha256 of the exact text the model read, so any setting that changes vectors misses and any
other setting (index type, HNSW M, retrieval, ...) hits. The cache is bounded: after each
ingest, the least recently used rows beyond twice the index's size (at least MIN_ROWS) are
dropped.
It is best effort: a damaged or unwritable cache is logged, set aside and never fails an ingest.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qa.embedding.backends import vector_space
from qa.recent import Recent

log = logging.getLogger(__name__)

CACHE_FILE = "embeddings.sqlite"
# The answerer's sentence vectors made by `qa serve`'s warm-up (qa/server/warmup.py): a file of
# its own, so the server never contends with an ingest writing CACHE_FILE.
SENTENCES_FILE = "sentences.sqlite"
# Called with (positions in the texts given, their vectors) as slices of an ingest finish.
SliceDone = Callable[[Sequence[int], np.ndarray], None]
# Below this many rows the cache is never pruned (a few MB; covers small corpora's history).
MIN_ROWS = 50_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (space TEXT NOT NULL, hash BLOB NOT NULL, vec BLOB NOT NULL,
    used INTEGER NOT NULL, PRIMARY KEY (space, hash)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_BATCH = 500  # keys per SELECT, far below SQLite's bound-variable limit


def cache_dir_for(index_dir: Path) -> Path:
    """Where the cache of the index at `index_dir` lives: a sibling folder, not inside it."""
    index_dir = Path(index_dir)
    return index_dir.with_name(index_dir.name + ".cache")


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors by (space, sha256(text)); every method degrades to a no-op on a storage error."""

    def __init__(self, path: Path, *, space: str, dim: int, max_rows: int = MIN_ROWS) -> None:
        self.path = Path(path)
        self.space = space
        self.dim = dim
        self.max_rows = max(max_rows, MIN_ROWS)
        self.hits = 0
        self.misses = 0
        self._db: sqlite3.Connection | None = None
        self._generation = 0
        try:
            self._open()
        except (sqlite3.DatabaseError, OSError) as exc:
            self._discard(exc)
            try:
                self._open()
            except (sqlite3.DatabaseError, OSError) as again:
                log.warning("Embedding cache %s unusable (%s); embedding without it", path, again)
                self._db = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path)
        try:
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            self._generation = (int(row[0]) if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (self._generation,))
            db.commit()
        except BaseException:
            db.close()
            raise
        self._db = db

    def _discard(self, exc: Exception) -> None:
        """Drop a damaged cache file: it only ever saves time."""
        log.warning("Embedding cache %s is damaged (%s); starting a new one", self.path, exc)
        if self._db is not None:
            self._db.close()
            self._db = None
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def get(self, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among `hashes` (marked as used now); missing ones are absent."""
        found: dict[bytes, np.ndarray] = {}
        if self._db is None:
            self.misses += len(hashes)
            return found
        nbytes = self.dim * 4
        try:
            for i in range(0, len(hashes), _BATCH):
                part = list(hashes[i : i + _BATCH])
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT hash, vec FROM vectors WHERE space = ? AND hash IN ({marks})",
                    [self.space, *part],
                ).fetchall()
                for h, vec in rows:
                    if len(vec) == nbytes:  # a truncated row is a miss, not garbage
                        found[bytes(h)] = np.frombuffer(vec, dtype=np.float32)
            self._touch(list(found))
        except sqlite3.DatabaseError as exc:
            self._discard(exc)
            found = {}
        self.hits += len(found)
        self.misses += len(hashes) - len(found)
        return found

    def put(self, hashes: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store one vector per hash (row i of `vectors` belongs to hashes[i])."""
        if self._db is None or not len(hashes):
            return
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = (
            (self.space, h, matrix[i].tobytes(), self._generation) for i, h in enumerate(hashes)
        )
        try:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
            self._db.commit()
        except (sqlite3.DatabaseError, OSError) as exc:
            self._discard(exc)

    def prune(self) -> int:
        """Drop the least recently used rows beyond `max_rows`; returns how many."""
        if self._db is None:
            return 0
        limit = self.max_rows
        try:
            (n,) = self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()
            if n <= limit:
                return 0
            self._db.execute(
                "DELETE FROM vectors WHERE (space, hash) IN "
                "(SELECT space, hash FROM vectors ORDER BY used LIMIT ?)",
                (n - limit,),
            )
            self._db.commit()
            return int(n - limit)
        except sqlite3.DatabaseError as exc:
            self._discard(exc)
            return 0

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _touch(self, hashes: list[bytes]) -> None:
        assert self._db is not None
        self._db.executemany(
            "UPDATE vectors SET used = ? WHERE space = ? AND hash = ?",
            ((self._generation, self.space, h) for h in hashes),
        )
        self._db.commit()


def open_cache(
    settings: Any, index_dir: Path, embedder: Any, *, rows: int = 0, file: str = CACHE_FILE
) -> EmbeddingCache | None:
    """The cache for this index folder and embedder (keeping at least twice the index's `rows`
    when pruning), or None when the settings turn it off. `file` names another cache in the
    same folder (the server's sentence vectors, SENTENCES_FILE)."""
    if not settings.embedding_cache:
        return None
    # What the vectors depend on besides the text; an embedder without these attributes (a
    # wrapper, a plugin) is taken to run as the settings say.
    backend = getattr(embedder, "backend", settings.embedding_backend)
    dtype = getattr(embedder, "dtype", settings.embedding_dtype)
    # Backends whose vectors agree (cosine >= 0.99, qa.embedding.backends) share their rows.
    space = f"{embedder.name}|{vector_space(backend, dtype)}|{embedder.dim}"
    path = cache_dir_for(index_dir) / file
    return EmbeddingCache(path, space=space, dim=embedder.dim, max_rows=2 * rows)


def embed_with_cache(
    cache: EmbeddingCache | None,
    texts: Sequence[str],
    embed: Callable[[list[str], SliceDone], np.ndarray],
    dim: int,
) -> np.ndarray:
    """Vectors of `texts`: cached ones looked up, the rest embedded by `embed` and stored.

    `embed(todo, done)` calls `done(positions, vectors)` after each slice it embeds, so the
    cache keeps what an interrupted ingest had already embedded.
    """
    out = np.empty((len(texts), dim), dtype=np.float32)
    if cache is None:
        if texts:
            out[:] = embed(list(texts), lambda positions, vectors: None)
        return out
    hashes = [text_hash(t) for t in texts]
    found = cache.get(hashes)
    todo = [i for i, h in enumerate(hashes) if h not in found]
    for i, h in enumerate(hashes):
        if h in found:
            out[i] = found[h]
    if todo:

        def done(positions: Sequence[int], vectors: np.ndarray) -> None:
            cache.put([hashes[todo[p]] for p in positions], vectors)

        out[todo] = embed([texts[i] for i in todo], done)
    return out


class QueryVectors:
    """The vectors of the last `size` questions, shared between threads.

    The retriever and then the answerer embed the same question: each embedder keeps one of
    these so the encoder runs once. Vectors are made read-only, since callers share them.
    """

    def __init__(self, size: int = 1024) -> None:
        self._vectors: Recent[str, np.ndarray] = Recent(size)

    def get(self, text: str) -> np.ndarray | None:
        return self._vectors.get(text)

    def put(self, text: str, vector: np.ndarray) -> np.ndarray:
        vector.setflags(write=False)
        return self._vectors.put(text, vector)

    def clear(self) -> None:
        self._vectors.clear()
