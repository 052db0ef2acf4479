"""Retrieval variants on BEIR SciFact test: quality and in-process search latency, one run.

    .venv/bin/python bench/bench_retrieval.py [--index index/eval-scifact] [--out bench/out]
        [--reranker PATH_OR_NAME]

For each variant (dense, BM25, hybrid RRF, hybrid convex, hybrid convex + dense feedback = the
default, and the default + a cross-encoder when --reranker is given) prints document-level
nDCG@10, recall@10 and recall@100 over the 300 test queries (ranked over the top 300 chunks,
as `qa eval` does), and the latency of `Pipeline.search(q, k=10)` (embedding included; each
query embedded fresh, FAISS on one OpenMP thread as in `qa serve`) p50/p95. Writes
bench/out/retrieval.json. The index is the one `qa eval ../shared/eval/scifact` builds; run
that first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.config import load_settings  # noqa: E402
from qa.evaluation.metrics import dedupe, ndcg_at_k, recall_at_k  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
VARIANTS: list[tuple[str, dict[str, object]]] = [
    ("dense", {"retrieval": "dense"}),
    ("bm25", {"retrieval": "bm25"}),
    ("hybrid rrf", {"fusion": "rrf", "rescore": False}),
    ("hybrid convex", {"rescore": False}),
    ("hybrid convex + feedback (default)", {}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "eval-scifact")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--reranker", help="a CrossEncoder name or folder for the rerank variant")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--only", help="run just the variant with this name")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)  # as `qa serve` runs searches (one thread per request)
    rows = [json.loads(x) for x in (SCIFACT / "questions.jsonl").read_text().splitlines()]
    queries = [r["question"] for r in rows]
    gold = [set(r["gold_ids"]) for r in rows]
    variants = list(VARIANTS)
    if args.reranker:
        variants.append(("default + cross-encoder", {"reranker": args.reranker}))
    if args.only:
        variants = [v for v in variants if v[0] == args.only]
    base = {"index_dir": args.index, "corpus_dir": args.index.with_name("eval-scifact.corpus")}
    results = []
    for name, overrides in variants:
        pipeline = Pipeline.load(load_settings(**base, **overrides))
        n10 = r10 = r100 = 0.0
        for ranked, g in zip(pipeline.retriever.retrieve_many(queries, 300), gold, strict=True):
            docs = dedupe(p.chunk.doc_id for p in ranked)
            n10 += ndcg_at_k(docs, g, 10)
            r10 += recall_at_k(docs, g, 10)
            r100 += recall_at_k(docs, g, 100)
        times = []
        embedder = pipeline.embedder
        for q in queries[: args.latency_queries]:
            cache_clear = getattr(embedder, "clear_query_cache", None)
            if cache_clear is not None:
                cache_clear()
            t0 = time.perf_counter()
            pipeline.search(q, k=10)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        row = {
            "variant": name,
            "ndcg@10": n10 / len(queries),
            "recall@10": r10 / len(queries),
            "recall@100": r100 / len(queries),
            "search_p50_ms": statistics.median(times),
            "search_p95_ms": times[int(0.95 * (len(times) - 1))],
        }
        results.append(row)
        print(
            f"{name:36s} nDCG@10 {row['ndcg@10']:.3f}  R@10 {row['recall@10']:.3f}  "
            f"R@100 {row['recall@100']:.3f}  p50 {row['search_p50_ms']:.1f} ms  "
            f"p95 {row['search_p95_ms']:.1f} ms",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
