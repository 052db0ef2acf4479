"""Writing the Postgres index: an ingest's IndexUpdate (or a FAISS index folder) into Postgres.

Ingest embeds only new and changed documents (by content hash, as for the FAISS store) before
`PostgresWriter.write` is called. Each write is one transaction, so readers (and a hot standby)
see the old corpus or the new one, never a half, and a run killed part-way changes nothing:

- incremental: upsert changed documents, delete their old chunks, COPY the new ones;
- full (first run, --rebuild, other model/dimension/chunking): COPY into fresh tables, build
  the HNSW and GIN indexes, then drop the old tables and rename the new ones in.

Runs on one schema are serialised by an advisory lock held for the whole run; the second
says so and waits. The BM25 keyword index is rebuilt in the same transaction and saved as a
tar in `keyword_index`, so every server (and replica) loads the same one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.config import Settings
from qa.stores.base import IndexUpdate, Previous, Written
from qa.stores.folder import build_differences, versions
from qa.stores.postgres.keyword import build_bm25, pack_bm25
from qa.stores.postgres.schema import (
    connect,
    create_corpus_tables,
    create_search_indexes,
    database_errors,
    describe,
    ensure_schema,
    index_lock,
    require_dsn,
)
from qa.types import Chunk, Document

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

_COPY_CHUNKS = (
    'COPY {table} (id, doc_id, seq, title, text, start, "end", n_tokens, page, embedding) '
    "FROM STDIN WITH (FORMAT BINARY)"
)
_CHUNK_TYPES = ["text", "text", "int4", "text", "text", "int4", "int4", "int4", "int4", "vector"]
_DOC_INSERT = (
    "INSERT INTO {table} (id, title, source, text, content_hash, pages) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET title = excluded.title, "
    "source = excluded.source, text = excluded.text, content_hash = excluded.content_hash, "
    "pages = excluded.pages"
)


class PostgresWriter:
    """One update of the Postgres index by a build described by `manifest`.

    Opening it connects, takes the schema's advisory lock (held until the writer closes) and
    reads what is indexed; `write` applies the update in one transaction.
    """

    def __init__(self, settings: Settings, manifest: Mapping[str, Any], *, rebuild: bool) -> None:
        self.settings = settings
        dsn = require_dsn(settings)
        self.where = f"{describe(dsn)} (schema {settings.pg_schema})"
        self._stack = ExitStack()
        try:
            self._stack.enter_context(database_errors(dsn, "database_url"))
            conn = self._stack.enter_context(
                connect(dsn, settings, setting="database_url", application="qa index")
            )
            # A killed run's backend must notice and roll back (and unlock) even while it waits.
            conn.execute("SET client_connection_check_interval = '1s'")
            self._stack.enter_context(index_lock(conn, settings, self.where))
            ensure_schema(conn, settings, self.where)
            self._old, reason = _previous(conn, settings, dict(manifest), rebuild, self.where)
            self.previous = Previous(
                hashes=_hashes(conn) if self._old is not None else {},
                n_chunks=_count(conn, "chunks") if self._old is not None else 0,
                reason=reason,
            )
        except BaseException as exc:
            # Through the stack, so database_errors turns a psycopg error into ours.
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.conn = conn

    def write(self, update: IndexUpdate) -> Written:
        old, conn = self._old, self.conn
        removed = sorted(self.previous.hashes.keys() - {d.id for d in update.documents})
        fresh_docs = [d for d in update.documents if d.id in update.fresh_ids]
        files = dict(sorted(update.files.items()))
        manifest = {**update.manifest, "files": files}
        up_to_date = (
            old is not None and not fresh_docs and not removed and old.get("files") == files
        )
        if old is None:
            write_full(
                conn, self.settings, update.documents, update.chunks, update.vectors, manifest
            )
        elif not up_to_date:
            changed = [d.id for d in fresh_docs if d.id in self.previous.hashes]
            _write_incremental(
                conn, self.settings, fresh_docs, changed, removed, update.chunks, update.vectors,
                {**old, **manifest},
            )  # fmt: skip
        log.info(
            "Synced %d documents into %s (%d new or changed, %d removed)",
            len(update.documents), self.where, len(fresh_docs), len(removed),
        )  # fmt: skip
        return Written(n_chunks=_count(conn, "chunks"), written=not up_to_date)

    def __enter__(self) -> PostgresWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        # Through the stack, so database_errors maps a psycopg error raised while writing.
        return self._stack.__exit__(exc_type, exc, tb)


def copy_faiss_index(settings: Settings, index_dir: Path) -> tuple[int, int]:
    """Copy a FAISS index folder (chunks + vectors, no re-embedding) into Postgres."""
    from qa.stores.faiss.store import FaissStore

    store = FaissStore.load(index_dir, settings)
    try:
        documents, chunks = store.documents(), store.chunks()
        vectors = np.asarray(store.vectors, dtype=np.float32)
        keep = ("counts", "documents", "index", "versions", "built_at", "bm25")
        manifest = {k: v for k, v in store.manifest.items() if k not in keep}
    finally:
        store.close()
    dsn = require_dsn(settings)
    where = f"{describe(dsn)} (schema {settings.pg_schema})"
    with (
        database_errors(dsn, "database_url"),
        connect(dsn, settings, setting="database_url", application="qa migrate") as conn,
        index_lock(conn, settings, where),
    ):
        ensure_schema(conn, settings, where)
        write_full(conn, settings, documents, chunks, vectors, manifest)
    return len(documents), len(chunks)


def _previous(
    conn: psycopg.Connection[Any],
    settings: Settings,
    wanted: dict[str, Any],
    rebuild: bool,
    where: str,
) -> tuple[dict[str, Any] | None, str]:
    """The manifest of the index in the database if it can be updated in place, and why not."""
    if rebuild:
        return None, "rebuild requested"
    row = conn.execute("SELECT data FROM manifest WHERE id = 1").fetchone()
    if row is None or conn.execute("SELECT to_regclass('chunks')").fetchone() == (None,):
        return None, f"no index in {where}"
    manifest: dict[str, Any] = row[0]
    diffs = build_differences(manifest, wanted)
    built_m = manifest.get("index", {}).get("params", {}).get("M")
    if built_m != settings.hnsw_m:
        diffs.append(("hnsw_m", built_m, settings.hnsw_m))
    if diffs:
        reason = "settings changed: " + "; ".join(f"{f} {a!r} -> {b!r}" for f, a, b in diffs)
        log.info("Rebuilding the index in %s fully (%s)", where, reason)
        return None, reason
    return manifest, "incremental update"


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _hashes(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return dict(conn.execute("SELECT id, content_hash FROM documents").fetchall())


def write_full(
    conn: psycopg.Connection[Any],
    settings: Settings,
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    manifest: dict[str, Any],
) -> None:
    """Replace the whole corpus in one transaction: new tables, indexes, then a rename."""
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else int(manifest["dim"])
    with conn.transaction():
        gen = _bump_generation(conn)
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        conn.execute("DROP TABLE IF EXISTS chunks_next, documents_next")
        create_corpus_tables(conn, suffix="_next", gen=gen, dim=dim, settings=settings)
        _insert_documents(conn, "documents_next", documents)
        _copy_chunks(conn, "chunks_next", chunks, vectors)
        info = create_search_indexes(conn, suffix="_next", gen=gen, settings=settings)
        # Readers wait only from here to the commit (the DROP's lock), then see the new tables.
        conn.execute("DROP TABLE IF EXISTS chunks, documents")
        conn.execute("ALTER TABLE documents_next RENAME TO documents")
        conn.execute("ALTER TABLE chunks_next RENAME TO chunks")
        full = {**manifest, "dim": dim, "index": info, "store": "postgres"}
        _finish(conn, settings, gen, full)
    log.info("Wrote %d documents, %d chunks (generation %d)", len(documents), len(chunks), gen)


def _write_incremental(
    conn: psycopg.Connection[Any],
    settings: Settings,
    fresh_docs: Sequence[Document],
    changed: Sequence[str],
    removed: Sequence[str],
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    manifest: dict[str, Any],
) -> None:
    """Apply new, changed and removed documents in one transaction."""
    with conn.transaction():
        gen = _bump_generation(conn)
        _insert_documents(conn, "documents", fresh_docs)
        conn.execute("DELETE FROM chunks WHERE doc_id = ANY(%s)", (list(changed),))
        conn.execute("DELETE FROM documents WHERE id = ANY(%s)", (list(removed),))
        _copy_chunks(conn, "chunks", chunks, vectors)
        _finish(conn, settings, gen, manifest)
    log.info(
        "Applied %d new or changed and %d removed documents (generation %d)",
        len(fresh_docs), len(removed), gen,
    )  # fmt: skip


def _bump_generation(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "UPDATE meta SET value = to_jsonb(value::text::bigint + 1) WHERE key = 'generation' "
        "RETURNING value"
    ).fetchone()
    assert row is not None, "ensure_schema creates the generation"
    return int(row[0])


def _insert_documents(
    conn: psycopg.Connection[Any], table: str, documents: Sequence[Document]
) -> None:
    rows = [(d.id, d.title, d.source, d.text, d.content_hash, list(d.pages)) for d in documents]
    with conn.cursor() as cur:
        cur.executemany(_DOC_INSERT.format(table=table), rows)


def _copy_chunks(
    conn: psycopg.Connection[Any], table: str, chunks: Sequence[Chunk], vectors: np.ndarray
) -> None:
    """COPY the chunks (seq = position within their document) with their vectors."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    seq: dict[str, int] = {}
    with conn.cursor() as cur, cur.copy(_COPY_CHUNKS.format(table=table)) as copy:
        copy.set_types(_CHUNK_TYPES)
        for c, vec in zip(chunks, vectors, strict=True):
            n = seq[c.doc_id] = seq.get(c.doc_id, -1) + 1
            copy.write_row(
                (c.id, c.doc_id, n, c.title, c.text, c.start, c.end, c.n_tokens, c.page, vec)
            )


def _finish(
    conn: psycopg.Connection[Any], settings: Settings, gen: int, manifest: dict[str, Any]
) -> None:
    """Save the BM25 index and the manifest of generation `gen` (inside its transaction)."""
    from psycopg.types.json import Jsonb

    from qa.stores.bm25 import INFO as BM25_INFO

    rows = conn.execute('SELECT id, doc_id, title, text, start, "end", n_tokens, page '
                        "FROM chunks ORDER BY doc_id, seq").fetchall()  # fmt: skip
    chunks = [Chunk(*r) for r in rows]
    (n_docs,) = conn.execute("SELECT count(*) FROM documents").fetchone()  # type: ignore[misc]
    full = {
        **manifest,
        "counts": {"documents": n_docs, "chunks": len(chunks), "files": len(manifest["files"])},
        "versions": {**versions(), "postgres": conn.info.parameter_status("server_version")},
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    # Saved whatever pg_keyword says, so servers can switch keyword ranking without re-indexing.
    conn.execute(
        "INSERT INTO keyword_index VALUES (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "generation = excluded.generation, chunk_ids = excluded.chunk_ids, data = excluded.data",
        (gen, [c.id for c in chunks], pack_bm25(build_bm25(chunks))),
    )
    full["bm25"] = BM25_INFO
    conn.execute(
        "INSERT INTO manifest VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
        (Jsonb(full),),
    )
