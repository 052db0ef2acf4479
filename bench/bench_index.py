"""Benchmark indexing and in-process search; writes bench/out/index.json and prints a table.

For each corpus: a full `build_index` (chunks/s) next to raw `SentenceTransformer.encode` on
the same chunk embedding texts with the same batch size in the same process, timed just
before and just after the build (their mean cancels slow drifts in machine load; the ratio is
what the pipeline costs on top of the model); search latency p50/p95 over 100 queries (FAISS +
SQLite alone, and with the query embedding); index size on disk; peak RSS.

    .venv/bin/python bench/bench_index.py             # demo corpus + SciFact (a few minutes)
    .venv/bin/python bench/bench_index.py --demo-only
    .venv/bin/python bench/bench_index.py --scifact-docs 1000   # a slice, on a busy machine
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.config import load_settings  # noqa: E402
from qa.embedding.models import get_embedder  # noqa: E402
from qa.ingest.build import build_index, make_chunker  # noqa: E402
from qa.ingest.readers import load_corpus  # noqa: E402
from qa.stores.faiss.store import FaissStore  # noqa: E402
from qa.types import embedding_text  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"


def questions(path: Path, n: int) -> list[str]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    found = [q["question"] for q in lines]
    return (found * (n // max(len(found), 1) + 1))[:n]


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


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
        "search_ms_p50": round(percentile(search_ms, 50), 3),
        "search_ms_p95": round(percentile(search_ms, 95), 3),
        "embed_and_search_ms_p50": round(percentile(total_ms, 50), 3),
        "embed_and_search_ms_p95": round(percentile(total_ms, 95), 3),
        "index_bytes": size,
        "index_files": {p.name: p.stat().st_size for p in sorted(settings.index_dir.iterdir())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-only", action="store_true", help="skip the SciFact corpus")
    parser.add_argument("--scifact-docs", type=int, default=0, help="first N docs only (0: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "index.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qa-bench-index-") as tmp:
        work = Path(tmp)
        demo_q = questions(ROOT / "bench" / "demo_questions.jsonl", args.queries)
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
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "load_average": list(__import__("os").getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("documents", "documents"),
        ("chunks", "chunks"),
        ("index type", "index_type"),
        ("build s", "build_seconds"),
        ("build chunks/s", "build_chunks_per_s"),
        ("raw encode chunks/s", "raw_encode_chunks_per_s"),
        ("build / raw", "build_vs_raw_ratio"),
        ("search ms p50", "search_ms_p50"),
        ("search ms p95", "search_ms_p95"),
        ("embed+search ms p50", "embed_and_search_ms_p50"),
        ("embed+search ms p95", "embed_and_search_ms_p95"),
        ("index MB", "index_bytes"),
    ]
    names = list(result["runs"])
    print(f"{'':22}" + "".join(f"{n:>14}" for n in names))
    for label, key in rows:
        cells = []
        for n in names:
            value = result["runs"][n][key]
            cells.append(f"{value / 1e6:>14.2f}" if key == "index_bytes" else f"{value!s:>14}")
        print(f"{label:22}" + "".join(cells))
    load = result["load_average"][0]
    print(f"{'peak RSS MB':22}{result['peak_rss_mb']:>14}  (load average {load:.1f})")


if __name__ == "__main__":
    raise SystemExit(main())
