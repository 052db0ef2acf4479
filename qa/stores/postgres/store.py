"""The PostgreSQL + pgvector store: the `Store` protocol over tables many servers share.

Reads go to `database_replica_url` when set (a hot standby), else to `database_url`; each
process keeps a small pool of connections, so `qa serve` processes stay stateless. Vector
search uses the HNSW index (inner product, iterative scan so filters and large k return
full lists); keyword search is app-side BM25 (the index `qa index` saved in the database,
reloaded when a newer ingest commits) or Postgres full-text ranking (`pg_keyword`).
Writing lives in `qa.stores.postgres.sync`, the schema in `qa.stores.postgres.schema`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from qa.config import Settings
from qa.errors import DocumentNotFoundError, IndexMismatchError, IndexNotFoundError
from qa.stores.folder import manifest_differences
from qa.stores.postgres.schema import (
    TEXT_CONFIG,
    connect,
    database_errors,
    describe,
    register_vector,
    require_dsn,
    schema_version,
)
from qa.types import Chunk, Document, DocumentInfo

if TYPE_CHECKING:
    import psycopg
    from pydantic import SecretStr

    from qa.stores.bm25 import Bm25Index

log = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK_COLUMNS = 'id, doc_id, title, text, start, "end", n_tokens, page'
# A question's words OR-ed (plainto_tsquery ANDs them, and few chunks hold every word).
_TSQUERY = (
    f"to_tsquery('simple', regexp_replace(plainto_tsquery('{TEXT_CONFIG}', %(q)s)::text, "
    "'&|<[0-9-]+>', '|', 'g'))"
)
_MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


class _Pool:
    """At most `size` connections, created on demand; a broken one is dropped, not reused."""

    def __init__(self, factory: Callable[[], psycopg.Connection[Any]], size: int) -> None:
        self._factory = factory
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._factory()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            except psycopg.OperationalError:
                conn.close()
                raise
            finally:
                if not conn.closed:
                    self._idle.put(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


class PostgresStore:
    """A loaded Postgres index; searching and reading are safe from many threads."""

    def __init__(self, settings: Settings, manifest: dict[str, Any], dsn: SecretStr) -> None:
        self.settings = settings
        self.manifest = manifest
        self.where = f"{describe(dsn)} (schema {settings.pg_schema})"
        self._dsn = dsn
        self._setting = "database_replica_url" if settings.database_replica_url else "database_url"
        self._pool = _Pool(self._connect, settings.pg_pool_size)
        self._bm25: tuple[int, Bm25Index, list[str]] | None = None
        self._bm25_lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, settings: Settings, *, dim: int | None = None) -> PostgresStore:
        """Open the index in the database, refusing one built with other settings."""
        dsn = require_dsn(settings, replica=True)
        setting = "database_replica_url" if settings.database_replica_url else "database_url"
        where = f"{describe(dsn)} (schema {settings.pg_schema})"
        with database_errors(dsn, setting):
            conn = connect(dsn, settings, setting=setting)
            try:
                version = schema_version(conn)
                row = None
                if version is not None:
                    row = conn.execute("SELECT data FROM manifest WHERE id = 1").fetchone()
            finally:
                conn.close()
        if row is None:
            raise IndexNotFoundError(
                f"No qa index in the database {where}. Run `qa index --store postgres` "
                "with the same --database-url (and --pg-schema) first."
            )
        manifest: dict[str, Any] = row[0]
        diffs = manifest_differences(manifest, settings, dim=dim)
        if diffs:
            detail = "; ".join(f"{f}: index has {a!r}, settings say {b!r}" for f, a, b in diffs)
            raise IndexMismatchError(
                f"The index in the database {where} was built with other settings ({detail}). "
                "Run `qa index --store postgres --rebuild`, or change the settings back."
            )
        return cls(settings, manifest, dsn)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self._dsn, self.settings, setting=self._setting)
        register_vector(conn, self.where)
        # Iterative scans keep filtered and deep searches full and in exact distance order.
        conn.execute("SET hnsw.iterative_scan = strict_order")
        return conn

    def close(self) -> None:
        self._pool.close()

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """fn(connection), retried once on a fresh connection when the old one broke."""
        import psycopg

        with database_errors(self._dsn, self._setting):
            try:
                with self._pool.connection() as conn:
                    return fn(conn)
            except psycopg.OperationalError:
                log.warning("Lost the connection to %s; reconnecting once", self.where)
            with self._pool.connection() as conn:
                return fn(conn)

    def _rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self._run(lambda conn: conn.execute(query, params).fetchall())

    # -- searching ----------------------------------------------------------------------

    @property
    def n_chunks(self) -> int:
        return int(self._rows("SELECT count(*) FROM chunks")[0][0])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    def search(
        self, query_vec: np.ndarray, k: int, *, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[Chunk, float]]:
        """The k chunks with the highest inner product with `query_vec` (only in `doc_ids`)."""
        query = np.asarray(query_vec, dtype=np.float32)
        if query.ndim == 2 and query.shape[0] != 1:
            raise ValueError(f"search takes one query, got shape {query.shape}; use search_batch")
        return self.search_batch(query.reshape(1, -1), k, doc_ids=doc_ids)[0]

    def search_batch(
        self, queries: np.ndarray, k: int, *, doc_ids: Sequence[str] | None = None
    ) -> list[list[tuple[Chunk, float]]]:
        """`search` for each row of an (m, dim) matrix, on one connection."""
        matrix = np.ascontiguousarray(queries, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}), got {matrix.shape}")
        if k < 1:
            return [[] for _ in range(matrix.shape[0])]
        where = "WHERE doc_id = ANY(%(docs)s)" if doc_ids is not None else ""
        sql = (
            f"SELECT {CHUNK_COLUMNS}, (embedding <#> %(v)s) * -1 FROM chunks {where} "
            "ORDER BY embedding <#> %(v)s LIMIT %(k)s"
        )
        ef = min(max(self.settings.hnsw_ef_search, k), _MAX_EF_SEARCH)

        def run(conn: psycopg.Connection[Any]) -> list[list[tuple[Chunk, float]]]:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            out = []
            for vec in matrix:
                params = {"v": vec, "k": k, "docs": list(doc_ids or ())}
                rows = conn.execute(sql, params).fetchall()
                out.append([(_chunk(r), float(r[8])) for r in rows])
            return out

        return self._run(run)

    def keyword_search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """The k best chunks by BM25 (or Postgres full-text rank), only those sharing a term."""
        if k < 1:
            return []
        if self.settings.pg_keyword == "fulltext":
            return self.fulltext_search(query, k)
        _, bm25, ids = self._keyword_index()
        hits = bm25.search(query, k)
        by_id = self._chunks_by_id([ids[pos] for pos, _ in hits])
        return [(by_id[ids[pos]], score) for pos, score in hits if ids[pos] in by_id]

    def fulltext_search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """The k best chunks by `ts_rank_cd` over the generated tsvector (GIN index)."""
        sql = (
            f"SELECT {CHUNK_COLUMNS}, ts_rank_cd(tsv, q) AS rank FROM chunks, {_TSQUERY} q "
            "WHERE tsv @@ q ORDER BY rank DESC, id LIMIT %(k)s"
        )
        rows = self._rows(sql, {"q": query, "k": k})
        return [(_chunk(r), float(r[8])) for r in rows]

    def chunk_vectors(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of these chunks, one row per id, in the order given."""
        rows = self._rows(
            "SELECT id, embedding FROM chunks WHERE id = ANY(%s)", (list(set(chunk_ids)),)
        )
        # pgvector >= 0.4 returns Vector objects, older ones numpy arrays.
        found = {r[0]: (r[1].to_numpy() if hasattr(r[1], "to_numpy") else r[1]) for r in rows}
        missing = [c for c in chunk_ids if c not in found]
        if missing:
            raise DocumentNotFoundError(f"No chunk {missing[0]!r} in the index in {self.where}.")
        if not chunk_ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([np.asarray(found[c], dtype=np.float32) for c in chunk_ids])

    def generation(self) -> int:
        """The number of the newest committed ingest (every write bumps it)."""
        return int(self._rows("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def _keyword_index(self) -> tuple[int, Bm25Index, list[str]]:
        """The BM25 index of the newest committed generation (loaded once per generation)."""
        generation = self.generation()
        with self._bm25_lock:
            if self._bm25 is None or self._bm25[0] != generation:
                self._bm25 = self._load_bm25(generation)
            return self._bm25

    def _load_bm25(self, generation: int) -> tuple[int, Bm25Index, list[str]]:
        from qa.stores.postgres.keyword import build_bm25, unpack_bm25

        rows = self._rows("SELECT generation, chunk_ids, data FROM keyword_index WHERE id = 1")
        if rows and int(rows[0][0]) == generation:
            return generation, unpack_bm25(bytes(rows[0][2])), list(rows[0][1])
        log.warning(
            "The index in %s has no BM25 index of its current generation; building one in "
            "memory. Run `qa index --store postgres` once to save it.",
            self.where,
        )
        chunks = self.chunks()
        return generation, build_bm25(chunks), [c.id for c in chunks]

    # -- reading ------------------------------------------------------------------------

    def document(self, doc_id: str) -> Document:
        """The document with id `doc_id`; DocumentNotFoundError if it is not indexed."""
        rows = self._rows(
            "SELECT id, title, source, text, content_hash, pages FROM documents WHERE id = %s",
            (doc_id,),
        )
        if not rows:
            raise DocumentNotFoundError(f"No document {doc_id!r} in the index in {self.where}.")
        return _document(rows[0])

    def documents(self) -> tuple[Document, ...]:
        """Every indexed document, sorted by id."""
        rows = self._rows(
            "SELECT id, title, source, text, content_hash, pages FROM documents ORDER BY id"
        )
        return tuple(_document(r) for r in rows)

    def document_list(self) -> tuple[DocumentInfo, ...]:
        """Every document's id, title, source, page and chunk counts, sorted by id."""
        rows = self._rows(
            "SELECT d.id, d.title, d.source, cardinality(d.pages), count(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id ORDER BY d.id"
        )
        return tuple(DocumentInfo(r[0], r[1], r[2], int(r[3] or 0), int(r[4])) for r in rows)

    def chunk(self, chunk_id: str) -> Chunk:
        """The chunk with id `chunk_id`; DocumentNotFoundError if it is not indexed."""
        found = self._chunks_by_id([chunk_id])
        if chunk_id not in found:
            raise DocumentNotFoundError(f"No chunk {chunk_id!r} in the index in {self.where}.")
        return found[chunk_id]

    def chunks(self) -> tuple[Chunk, ...]:
        """Every chunk: documents by id, chunks in text order."""
        rows = self._rows(f"SELECT {CHUNK_COLUMNS} FROM chunks ORDER BY doc_id, seq")
        return tuple(_chunk(r) for r in rows)

    def _chunks_by_id(self, ids: Sequence[str]) -> dict[str, Chunk]:
        if not ids:
            return {}
        rows = self._rows(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id = ANY(%s)", (list(ids),))
        return {r[0]: _chunk(r) for r in rows}


def _chunk(row: Sequence[Any]) -> Chunk:
    cid, doc_id, title, text, start, end, n_tokens, page = row[:8]
    return Chunk(cid, doc_id, title, text, start, end, n_tokens, page)


def _document(row: Sequence[Any]) -> Document:
    doc_id, title, source, text, content_hash, pages = row
    return Document(doc_id, title, text, source, content_hash, tuple(pages))
