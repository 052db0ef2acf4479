"""Scale: the store alone at 100k and 1M chunks, then a `qa serve` holding N chunks.

Vectors are synthetic (bench/synth.py `clustered_vectors`: MiniLM-like statistics, seed 0),
so the encoder is not the bottleneck; queries are noisy copies of indexed vectors. For each
index kind: build seconds, size on disk, single-query search latency p50/p99 (one query per
call, as a server does; the file loaded the way `FaissStore.load` loads it) and recall@10
against exact search. Kinds: flat (exact), hnsw (what `qa` builds: HNSW32 over 8-bit codes),
hnsw-flat (float32 HNSW, for comparison), ivf (what `qa` builds: IVF-Flat) at several nprobe,
ivf-pq (IVF + 48-byte PQ codes, re-ranked exactly on float32 vectors: the compressed option).

With --serve N: a real index folder of N synthetic chunks written by `FaissStore.write`
(FAISS index chosen by `index_type=auto`, SQLite store, BM25), then `qa serve` on it:
start-up to /readyz, RSS (own memory and mapped index pages) after /ask load, /ask latency.
With --postgres N: the PostgreSQL + pgvector store against FAISS HNSW on N synthetic vectors
(bench/pg_store.py). Writes bench/out/scale.json.

    .venv/bin/python bench/scale.py --sizes 100000 --serve 100000       # ~15 minutes
    .venv/bin/python bench/scale.py --sizes 1000000 --kinds flat hnsw ivf --serve 1000000
    .venv/bin/python bench/scale.py --sizes --postgres 100000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpload
import numpy as np
import synth
from common import Run, table

K = 10


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_queries(index: Any, queries: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """p50/p99 ms of one-query searches, and recall@10 against `truth`."""
    ms: list[float] = []
    found = 0
    index.search(queries[:5], K)  # warm-up
    for i in range(len(queries)):
        t0 = time.perf_counter()
        _, rows = index.search(queries[i : i + 1], K)
        ms.append((time.perf_counter() - t0) * 1000)
        found += len(set(rows[0].tolist()) & set(truth[i].tolist()))
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "recall_at_10": round(found / (K * len(queries)), 4),
    }


def bench_kind(
    name: str,
    build: Callable[[], Any],
    knobs: list[tuple[str, Callable[[Any], None]]],
    queries: np.ndarray,
    truth: np.ndarray,
    work: Path,
    prebuilt: tuple[Path, float] | None = None,
) -> list[dict[str, Any]]:
    """Build, write and re-read (memory-mapped, like FaissStore.load) one index; time each knob.

    `prebuilt`: (index file, build seconds) of the same index already written elsewhere.
    """
    import faiss

    if prebuilt is None:
        t0 = time.perf_counter()
        index = build()
        seconds = time.perf_counter() - t0
        path = work / f"{name}.faiss"
        faiss.write_index(index, str(path))
        del index
    else:
        path, seconds = prebuilt
    loaded = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    rows = []
    for label, apply in knobs:
        apply(loaded)
        rows.append(
            {
                "kind": name,
                "knob": label,
                "build_s": round(seconds, 1),
                "size_mb": round(path.stat().st_size / 1e6, 1),
                **time_queries(loaded, queries, truth),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if prebuilt is None:
        path.unlink()
    return rows


def bench_size(
    n: int,
    n_queries: int,
    work: Path,
    kinds: list[str],
    prebuilt: dict[str, tuple[Path, float]] | None = None,
) -> dict[str, Any]:
    import faiss

    from qa.config import load_settings
    from qa.stores.faiss.index import build_faiss

    t0 = time.perf_counter()
    vectors = synth.clustered_vectors(n, seed=0)
    queries = synth.queries_near(vectors, n_queries, seed=1)
    gen_s = time.perf_counter() - t0
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, K)
    del exact

    def product(**overrides: Any) -> Callable[[], Any]:
        settings = load_settings(_env_file=None, **overrides)
        return lambda: build_faiss(vectors, settings)[0]

    def set_ef(ef: int) -> Callable[[Any], None]:
        return lambda index: setattr(faiss.downcast_index(index).hnsw, "efSearch", ef)

    def set_nprobe(nprobe: int) -> Callable[[Any], None]:
        return lambda index: setattr(faiss.extract_index_ivf(index), "nprobe", nprobe)

    def set_threads(threads: int) -> Callable[[Any], None]:
        return lambda index: faiss.omp_set_num_threads(threads)

    def ivf_pq() -> Any:
        nlist = int(4 * math.sqrt(n))
        index = faiss.index_factory(
            vectors.shape[1], f"IVF{nlist},PQ48,RFlat", faiss.METRIC_INNER_PRODUCT
        )
        index.train(vectors[np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)])
        index.add(vectors)
        faiss.downcast_index(index).k_factor = 8
        return index

    def hnsw_flat() -> Any:
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        index.add(vectors)
        return index

    threads = faiss.omp_get_max_threads()
    plans: dict[str, tuple[Callable[[], Any], list[tuple[str, Callable[[Any], None]]]]] = {
        "flat": (
            product(index_type="flat"),
            [(f"{threads} threads", set_threads(threads)), ("1 thread", set_threads(1))],
        ),
        "hnsw": (
            product(index_type="hnsw"),
            [(f"ef {ef}", set_ef(ef)) for ef in (64, 128, 256, 512)],
        ),
        "hnsw-flat": (hnsw_flat, [(f"ef {ef}", set_ef(ef)) for ef in (64, 128)]),
        "ivf": (product(index_type="ivf"), [(f"nprobe {p}", set_nprobe(p)) for p in (32, 128)]),
        "ivf-pq": (ivf_pq, [(f"nprobe {p}, refine x8", set_nprobe(p)) for p in (32, 128)]),
    }
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        build, knobs = plans[kind]
        rows += bench_kind(kind, build, knobs, queries, truth, work, (prebuilt or {}).get(kind))
        faiss.omp_set_num_threads(threads)
    return {"n": n, "queries": n_queries, "generate_s": round(gen_s, 1), "rows": rows}


# -- a real index folder and `qa serve` -------------------------------------------------


def write_folder(index_dir: Path, n: int) -> dict[str, Any]:
    """A complete index folder of `n` synthetic chunks (5 per document), as `qa index` writes."""
    import qa.stores.faiss.store
    from qa.config import load_settings
    from qa.ingest.chunking import CHUNKER_VERSION
    from qa.stores.faiss.store import FaissStore
    from qa.stores.folder import base_manifest
    from qa.types import Chunk, Document

    t0 = time.perf_counter()
    texts = synth.chunk_texts(n, seed=0)
    vectors = synth.clustered_vectors(n, seed=0)
    documents, chunks = [], []
    for d in range(0, n, 5):
        doc_id = f"doc{d // 5:07d}"
        title = texts[d].split(" of ", 1)[0][:60]
        parts, start = [], 0
        for i, text in enumerate(texts[d : d + 5]):
            chunks.append(
                Chunk(f"{doc_id}#{i}", doc_id, title, text, start, start + len(text), 130)
            )
            parts.append(text)
            start += len(text) + 2
        body = "\n\n".join(parts)
        digest = hashlib.sha256(body.encode()).hexdigest()
        documents.append(Document(doc_id, title, body, f"{doc_id}.txt", digest))
    prepared = time.perf_counter() - t0
    settings = load_settings(index_dir=index_dir, _env_file=None)
    timings: dict[str, float] = {}
    real_build = qa.stores.faiss.store.build_faiss

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return real_build(*args, **kwargs)
        finally:
            timings["faiss_build_s"] = round(time.perf_counter() - t, 1)

    qa.stores.faiss.store.build_faiss = timed_build  # type: ignore[assignment]
    try:
        t1 = time.perf_counter()
        manifest = base_manifest(
            settings, model=settings.embedding_model, dim=384, model_token_limit=254,
            chunker=CHUNKER_VERSION, corpus_dir="synthetic",
        )  # fmt: skip
        full = FaissStore.write(
            index_dir, documents=documents, chunks=chunks, vectors=vectors,
            manifest=manifest, settings=settings,
        )  # fmt: skip
        write_s = time.perf_counter() - t1
    finally:
        qa.stores.faiss.store.build_faiss = real_build  # type: ignore[assignment]
    files = {
        str(p.relative_to(index_dir)): p.stat().st_size for p in index_dir.rglob("*") if p.is_file()
    }
    return {
        "chunks": n,
        "index": full["index"],
        "prepare_s": round(prepared, 1),
        "write_s": round(write_s, 1),
        **timings,
        "size_mb": round(sum(files.values()) / 1e6, 1),
        "files_mb": {k: round(v / 1e6, 1) for k, v in sorted(files.items())},
    }


def proc_memory(pid: int) -> dict[str, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    # RssFile: pages of memory-mapped files (index codes, BM25, vectors), which the kernel
    # can drop under pressure; RssAnon: the process's own memory.
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in keys}


def bench_serve(index_dir: Path, requests: int, work: Path) -> dict[str, Any]:
    log = work / "serve.log"
    questions = [s.rstrip(".") + "?" for s in synth.sentences(200, seed=7)]
    ready_s, proc, url = httpload.time_to_ready(index_dir, log, timeout=900)
    try:
        at_ready = proc_memory(proc.pid)
        # Warm-up, not measured: first searches fault in the memory-mapped pages.
        asyncio.run(httpload.load(url, questions[::-1], 4, 40))
        # Every measured question new to the server (unseen=1: tagged per level): otherwise 8
        # clients re-asking the 1-client level's questions would time `qa serve`'s reuse of
        # repeated answers, not the search and the answer.
        one = asyncio.run(httpload.load(url, questions, 1, requests, unseen=1.0))
        eight = asyncio.run(httpload.load(url, questions, 8, requests, unseen=1.0))
        after = proc_memory(proc.pid)
    finally:
        httpload.stop(proc)
    return {
        "ready_s": round(ready_s, 2),
        "rss_mb_at_ready": at_ready,
        "rss_mb_after_load": after,
        "peak_rss_mb": after["VmHWM"],
        "ask_1_client": one,
        "ask_8_clients": eight,
    }


def tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    rows = [
        [f"{size['n']:,}", r["kind"], r["knob"], r["build_s"], r["size_mb"], r["p50_ms"],
         r["p99_ms"], r["recall_at_10"]]
        for size in result["sizes"]
        for r in size["rows"]
    ]  # fmt: skip
    if rows:
        out.append(
            table(
                "The FAISS index alone: one query per call, memory-mapped as `qa serve` loads it",
                [
                    "chunks",
                    "kind",
                    "knob",
                    "build s",
                    "MB on disk",
                    "p50 ms",
                    "p99 ms",
                    "recall@10 vs exact",
                ],
                rows,
                "hnsw and ivf are what `qa index` builds (index_type auto: flat up to "
                "`auto_index_threshold` chunks, hnsw past it); flat is exact search.",
            )
        )
    serve = result.get("serve")
    if serve:
        folder = result.get("folder", {})
        kind = folder.get("index", {}).get("type", "existing")
        at, after = serve["rss_mb_at_ready"], serve["rss_mb_after_load"]
        one, eight = serve["ask_1_client"], serve["ask_8_clients"]
        out.append(
            table(
                f"`qa serve` holding {serve['chunks']:,} synthetic chunks ({kind} index; "
                "hybrid retrieval, extractive answers; every question new)",
                [
                    "folder written s (FAISS build s)",
                    "MB on disk",
                    "ready s",
                    "RSS at ready MB",
                    "RSS after the load MB (own + mapped)",
                    "1 client p50 / p99 ms",
                    "8 clients p50 / p99 ms",
                    "errors",
                ],
                [
                    [
                        f"{folder.get('write_s', '-')} ({folder.get('faiss_build_s', '-')})",
                        folder.get("size_mb", "-"),
                        serve["ready_s"],
                        at["VmRSS"],
                        f"{after['VmRSS']} ({after['RssAnon']} + {after['RssFile']})",
                        f"{one['p50_ms']} / {one['p99_ms']}",
                        f"{eight['p50_ms']} / {eight['p99_ms']}",
                        one["errors"] + eight["errors"],
                    ]
                ],
                "A folder reused with --keep shows '-' for its writing.",
            )
        )
    pg = result.get("postgres")
    if pg:
        out.append(
            table(
                f"PostgreSQL + pgvector against FAISS HNSW, {pg['n']:,} synthetic vectors",
                [
                    "store",
                    "load rows/s",
                    "index build s",
                    "recall@10",
                    "1 client p50 / p99 ms",
                    "8 clients p50 / p99 ms",
                ],
                [
                    [
                        "postgres",
                        round(pg["pg_copy_rows_per_s"]),
                        round(pg["pg_index_build_s"], 1),
                        round(pg["pg_recall@10"], 3),
                        _pg_ms(pg, "pg", 1),
                        _pg_ms(pg, "pg", 8),
                    ],
                    [
                        "faiss hnsw (float32)",
                        "-",
                        round(pg["faiss_hnsw_build_s"], 1),
                        round(pg["faiss_recall@10"], 3),
                        _pg_ms(pg, "faiss", 1),
                        _pg_ms(pg, "faiss", 8),
                    ],
                ],
            )
        )
    return out


def _pg_ms(pg: dict[str, Any], store: str, clients: int) -> str:
    ms = pg[f"{store}_search_ms_{clients}_clients"]
    return f"{ms['p50']:.2f} / {ms['p99']:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--kinds", nargs="+", default=["flat", "hnsw", "hnsw-flat", "ivf", "ivf-pq"]
    )
    parser.add_argument("--serve", type=int, default=0, help="chunks in the served index (0: no)")
    parser.add_argument("--requests", type=int, default=200, help="/ask requests per client level")
    parser.add_argument("--keep", type=Path, help="keep (or reuse) the served index folder here")
    parser.add_argument("--postgres", type=int, default=0, help="Postgres vs FAISS at N (0: no)")
    parser.add_argument("--dsn", help="Postgres DSN (default: a temporary embedded server)")
    args = parser.parse_args()
    bench = Run("scale")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qa-bench-scale-") as tmp:
        work = Path(tmp)
        index_dir = args.keep or work / "index"
        prebuilt: dict[str, tuple[Path, float]] = {}
        if args.serve:
            # The served folder's FAISS index (auto: HNSW at 1M) is also the "hnsw" row at
            # that size: one build, not two.
            if not (index_dir / "manifest.json").is_file():
                result["folder"] = write_folder(index_dir, args.serve)
                print(json.dumps(result["folder"]), flush=True)
            folder = result.get("folder", {})
            if folder.get("index", {}).get("type") == "hnsw":
                prebuilt["hnsw"] = (index_dir / "index.faiss", folder.get("faiss_build_s", 0.0))
        result["sizes"] = [
            bench_size(n, args.queries, work, args.kinds, prebuilt if n == args.serve else None)
            for n in args.sizes
        ]
        if args.serve:
            result["serve"] = {"chunks": args.serve, **bench_serve(index_dir, args.requests, work)}
            if args.keep is None:
                shutil.rmtree(index_dir, ignore_errors=True)
    if args.postgres:
        result["postgres"] = postgres(args.postgres, args.queries, args.dsn)
    bench.write(result, tables(result))
    return 0


def postgres(n: int, n_queries: int, dsn: str | None) -> dict[str, Any]:
    from pg_store import postgres_vs_faiss

    if dsn is not None:
        return postgres_vs_faiss(n, n_queries, dsn)
    from tests.pg_server import PgServer

    server = PgServer.primary()
    try:
        return postgres_vs_faiss(n, n_queries, server.dsn)
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
