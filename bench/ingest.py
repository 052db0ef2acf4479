"""Ingest: `build_index` against the raw encoder on the same texts, and in-process search.

For each corpus: a full `build_index` (chunks/s) next to raw `SentenceTransformer.encode` on
the same chunk embedding texts with the same batch size in the same process, timed just
before and just after the build (their mean cancels slow drifts in machine load; the ratio is
what the pipeline costs on top of the model); search latency p50/p95 over 100 queries (FAISS +
SQLite alone, and with the query embedding); index size on disk; peak RSS. Both sides run the
torch backend (the raw side is `SentenceTransformer.encode`). Writes bench/out/ingest.json.

    .venv/bin/python bench/ingest.py                     # demo + the first 300 SciFact documents
    .venv/bin/python bench/ingest.py --scifact-docs 0    # demo + all of SciFact (~5,200)
    .venv/bin/python bench/ingest.py --demo-only
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from common import DEMO_QUESTIONS, ROOT, SCIFACT, Run, percentile, questions, table

from qa.config import load_settings
from qa.embedding.models import get_embedder
from qa.ingest.build import build_index, make_chunker
from qa.ingest.readers import load_corpus
from qa.stores.faiss.store import FaissStore
from qa.types import embedding_text


def chunk_texts(settings: Any, embedder: Any) -> list[str]:
    """The embedding texts `build_index` will embed, in the same order."""
    chunker = make_chunker(settings, embedder)
    docs = load_corpus(settings.corpus_dir).documents
    return [embedding_text(c) for chunks in chunker.chunk_documents(docs) for c in chunks]


def raw_encode_seconds(embedder: Any, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    embedder.model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    return time.perf_counter() - started


def bench_corpus(
    name: str, corpus: Path, queries: list[str], batch_size: int, work: Path
) -> dict[str, Any]:
    settings = load_settings(
        corpus_dir=corpus,
        index_dir=work / name / "index",
        embedding_batch_size=batch_size,
        _env_file=None,
    )
    embedder: Any = get_embedder(settings.embedding_model, batch_size=batch_size)
    embedder.embed_documents(["warm up the model"] * batch_size)

    # Raw model throughput on the very texts the build embeds, measured before and after the
    # build (the mean cancels slow drifts in machine load), with the same batch size.
    texts = chunk_texts(settings, embedder)
    raw_before = raw_encode_seconds(embedder, texts, batch_size)
    report = build_index(settings, embedder=embedder, rebuild=True, progress=True)
    raw_after = raw_encode_seconds(embedder, texts, batch_size)
    assert report.n_chunks == len(texts)
    build_rate = report.n_chunks / report.seconds
    raw_seconds = (raw_before + raw_after) / 2
    raw_rate = len(texts) / raw_seconds
    store = FaissStore.load(settings.index_dir, settings, dim=embedder.dim)

    vectors = [embedder.embed_query(q) for q in queries[:5]]  # warm-up
    search_ms, total_ms = [], []
    for q in queries:
        t0 = time.perf_counter()
        vector = embedder.embed_query(q)
        t1 = time.perf_counter()
        store.search(vector, settings.top_k)
        t2 = time.perf_counter()
        search_ms.append((t2 - t1) * 1000)
        total_ms.append((t2 - t0) * 1000)
    del vectors
    size = sum(p.stat().st_size for p in settings.index_dir.iterdir())
    return {
        "corpus": str(corpus),
        "documents": report.n_documents,
        "chunks": report.n_chunks,
        "index_type": store.manifest["index"]["type"],
        "batch_size": batch_size,
        "build_seconds": round(report.seconds, 2),
        "build_chunks_per_s": round(build_rate, 2),
        "raw_encode_seconds": round(raw_seconds, 2),
        "raw_encode_seconds_before_after": [round(raw_before, 2), round(raw_after, 2)],
        "raw_encode_chunks_per_s": round(raw_rate, 2),
        "build_vs_raw_ratio": round(build_rate / raw_rate, 3),
        "queries": len(queries),
        "search_ms_p50": percentile(search_ms, 50),
        "search_ms_p95": percentile(search_ms, 95),
        "embed_and_search_ms_p50": percentile(total_ms, 50),
        "embed_and_search_ms_p95": percentile(total_ms, 95),
        "index_bytes": size,
        "index_files": {p.name: p.stat().st_size for p in sorted(settings.index_dir.iterdir())},
    }


COLUMNS = ["corpus", "documents", "chunks", "build s", "build chunks/s", "raw encoder chunks/s",
           "build / raw", "search p50 / p95 ms", "embed + search p50 / p95 ms", "index MB",
           "index"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-only", action="store_true", help="skip the SciFact corpus")
    parser.add_argument("--scifact-docs", type=int, default=300, help="first N docs (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bench = Run("ingest")
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qa-bench-ingest-") as tmp:
        work = Path(tmp)
        demo_q = questions(DEMO_QUESTIONS, args.queries)
        runs["demo"] = bench_corpus("demo", ROOT / "corpus", demo_q, args.batch_size, work)
        if not args.demo_only:
            # The SciFact folder also holds questions files: index corpus.jsonl alone.
            folder = work / "scifact-corpus"
            folder.mkdir()
            if args.scifact_docs:
                lines = (SCIFACT / "corpus.jsonl").read_text().splitlines()[: args.scifact_docs]
                (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
            else:
                (folder / "corpus.jsonl").symlink_to(SCIFACT / "corpus.jsonl")
            sci_q = questions(SCIFACT / "questions.jsonl", args.queries)
            runs["scifact"] = bench_corpus("scifact", folder, sci_q, args.batch_size, work)
    result = {
        "runs": runs,
        "scifact_docs": args.scifact_docs or "all",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    rows = [
        [
            name if name == "demo" else f"SciFact, {r['documents']:,} documents",
            r["documents"], r["chunks"], r["build_seconds"], r["build_chunks_per_s"],
            r["raw_encode_chunks_per_s"], r["build_vs_raw_ratio"],
            f"{r['search_ms_p50']} / {r['search_ms_p95']}",
            f"{r['embed_and_search_ms_p50']} / {r['embed_and_search_ms_p95']}",
            round(r["index_bytes"] / 1e6, 1), r["index_type"],
        ]
        for name, r in runs.items()
    ]  # fmt: skip
    bench.write(
        result,
        [
            table(
                "`build_index` against the raw encoder on the same chunk texts (torch, batch "
                f"{args.batch_size})",
                COLUMNS,
                rows,
                f"Peak RSS of the process {result['peak_rss_mb']} MB.",
            )
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
