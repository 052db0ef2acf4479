"""Retrieval quality: each retrieval variant on BEIR SciFact test, and in-process search time.

    .venv/bin/python bench/retrieval.py                      # the 300 test questions, all 5,183
                                                             # documents (~10 min to index once)
    .venv/bin/python bench/retrieval.py --questions 100 --distractors 400   # a slice
    .venv/bin/python bench/retrieval.py --reranker NAME_OR_DIR             # + a cross-encoder
    .venv/bin/python bench/retrieval.py --tune               # fit the fusion on the train split

For each variant (dense, BM25, hybrid RRF, hybrid convex, hybrid convex + dense feedback = the
default) document-level nDCG@10, recall@10 and recall@100 over the test questions (the top 300
chunks ranked as `qa eval` does), and `Pipeline.search(q, k=10)` p50/p95 (the question embedded
afresh each time, FAISS on one thread as in `qa serve`). The index is built once with the
shipped settings into bench/out/work/retrieval/ and reused.

`--tune` is how the shipped fusion weight and dense-feedback constants
(`qa/retrieval/retriever.py`, `qa/retrieval/fusion.py`) were chosen: a grid over SciFact's
*train* queries (original/qrels/train.tsv, disjoint from the test questions), best first;
judge the winner on test afterwards, never tune on it. Writes bench/out/retrieval.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import SCIFACT, WORK, Run, percentile, table

import qa.retrieval.retriever as retrieval
from qa.config import Settings, load_settings
from qa.embedding.models import embedder_for, resolve_backend
from qa.evaluation.metrics import dedupe, ndcg_at_k, recall_at_k
from qa.ingest.build import build_index
from qa.pipeline import Pipeline

VARIANTS: list[tuple[str, dict[str, object]]] = [
    ("dense (all-MiniLM-L6-v2)", {"retrieval": "dense"}),
    ("BM25 (bm25s, stemmed)", {"retrieval": "bm25"}),
    ("hybrid RRF k=60", {"fusion": "rrf", "rescore": False}),
    ("hybrid convex", {"rescore": False}),
    ("hybrid convex + dense feedback (the default)", {}),
]


def dataset(n_questions: int, n_distractors: int) -> tuple[Path, list[dict[str, Any]]]:
    """The corpus folder and test questions: all of SciFact, or the first `n_questions` with
    their gold documents and `n_distractors` other documents (seed 0)."""
    rows = [json.loads(x) for x in (SCIFACT / "questions.jsonl").read_text().splitlines()]
    lines = (SCIFACT / "corpus.jsonl").read_text().splitlines()
    if not n_questions:
        folder = WORK / "retrieval" / "scifact-corpus"
        keep = lines
    else:
        rows = rows[:n_questions]
        folder = WORK / "retrieval" / f"scifact-{n_questions}q-{n_distractors}d-corpus"
        gold = {g for r in rows for g in r["gold_ids"]}
        others = [x for x in lines if json.loads(x)["id"] not in gold]
        keep = [x for x in lines if json.loads(x)["id"] in gold]
        keep += random.Random(0).sample(others, min(n_distractors, len(others)))
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    text = "\n".join(keep) + "\n"
    if not corpus.exists() or corpus.read_text() != text:
        corpus.write_text(text)
    return folder, rows


def index(corpus: Path) -> tuple[Settings, dict[str, Any]]:
    """Settings over `corpus` with its index beside it, built (or brought up to date) now,
    and what that build did (nothing to embed when the index is current)."""
    settings = load_settings(
        corpus_dir=corpus, index_dir=corpus.with_name(corpus.name + "-index"), _env_file=None
    )
    resolved, _ = resolve_backend(settings)
    report = build_index(resolved, embedder=embedder_for(resolved), progress=True)
    print(f"index: {report.n_chunks} chunks, {report.seconds:.0f} s", flush=True)
    return settings, {"chunks": report.n_chunks, "build_s": round(report.seconds, 1)}


def judge(
    settings: Settings, rows: list[dict[str, Any]], variants: list[tuple[str, dict[str, object]]]
) -> list[dict[str, Any]]:
    import faiss

    faiss.omp_set_num_threads(1)  # as `qa serve` runs searches (one thread per request)
    queries = [r["question"] for r in rows]
    gold = [set(r["gold_ids"]) for r in rows]
    results = []
    for name, overrides in variants:
        pipeline = Pipeline.load(settings.model_copy(update=overrides))
        n10 = r10 = r100 = 0.0
        for ranked, g in zip(pipeline.retriever.retrieve_many(queries, 300), gold, strict=True):
            docs = dedupe(p.chunk.doc_id for p in ranked)
            n10 += ndcg_at_k(docs, g, 10)
            r10 += recall_at_k(docs, g, 10)
            r100 += recall_at_k(docs, g, 100)
        times = []
        for q in queries:
            clear = getattr(pipeline.embedder, "clear_query_cache", None)
            if clear is not None:
                clear()
            t0 = time.perf_counter()
            pipeline.search(q, k=10)
            times.append((time.perf_counter() - t0) * 1000)
        row = {
            "variant": name,
            "ndcg@10": round(n10 / len(queries), 4),
            "recall@10": round(r10 / len(queries), 4),
            "recall@100": round(r100 / len(queries), 4),
            "search_p50_ms": percentile(times, 50),
            "search_p95_ms": percentile(times, 95),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def train_queries() -> tuple[list[str], list[set[str]]]:
    """SciFact's train-split query texts and their relevant document ids."""
    qrels: dict[str, set[str]] = {}
    with open(SCIFACT / "original" / "qrels" / "train.tsv", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], set()).add(row["corpus-id"])
    texts = {}
    for line in (SCIFACT / "original" / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        texts[q["_id"]] = q["text"]
    ids = sorted(qrels, key=int)
    return [texts[i] for i in ids], [qrels[i] for i in ids]


def tune(settings: Settings) -> list[dict[str, Any]]:
    """The fusion grid on the train queries, best nDCG@10 first."""
    queries, gold = train_queries()
    grid: list[tuple[str, dict[str, object], tuple[float, int]]] = [
        ("dense", {"retrieval": "dense"}, (0.0, 0)),
        ("rrf k=60", {"fusion": "rrf", "rrf_k": 60, "rescore": False}, (0.0, 0)),
    ]
    for w in (0.4, 0.5, 0.6, 0.7, 0.8):
        grid.append((f"convex w={w}", {"fusion_weight": w, "rescore": False}, (0.0, 0)))
    for w, fb, docs in itertools.product((0.5, 0.6, 0.7, 0.8), (0.3, 0.6), (3,)):
        grid.append(
            (f"convex w={w} + feedback {fb} x top {docs}", {"fusion_weight": w}, (fb, docs))
        )
    shipped = (retrieval.FEEDBACK_WEIGHT, retrieval.FEEDBACK_DOCS)
    rows: list[dict[str, Any]] = []
    vectors = None
    try:
        for name, overrides, (fb, docs) in grid:
            retrieval.FEEDBACK_WEIGHT, retrieval.FEEDBACK_DOCS = fb, docs
            pipeline = Pipeline.load(settings.model_copy(update=overrides))
            if vectors is None:
                vectors = pipeline.embedder.embed_documents(queries)
            n10 = r10 = r100 = 0.0
            ranked = pipeline.retriever.retrieve_with_vectors(queries, np.asarray(vectors), 100)
            for passages, g in zip(ranked, gold, strict=True):
                found = dedupe(p.chunk.doc_id for p in passages)
                n10 += ndcg_at_k(found, g, 10)
                r10 += recall_at_k(found, g, 10)
                r100 += recall_at_k(found, g, 100)
            n = len(queries)
            metrics = {"ndcg@10": n10 / n, "recall@10": r10 / n, "recall@100": r100 / n}
            rows.append({"variant": name, **{k: round(v, 4) for k, v in metrics.items()}})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        retrieval.FEEDBACK_WEIGHT, retrieval.FEEDBACK_DOCS = shipped
    return sorted(rows, key=lambda r: -float(r["ndcg@10"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=0, help="first N test questions (0: all)")
    parser.add_argument("--distractors", type=int, default=400, help="with --questions")
    parser.add_argument("--reranker", help="a CrossEncoder name or folder for a rerank variant")
    parser.add_argument("--tune", action="store_true", help="the fusion grid on the train split")
    args = parser.parse_args()
    if args.tune and args.questions:
        parser.error(
            "--tune needs the whole corpus (the train questions' documents): drop --questions"
        )
    bench = Run("retrieval")
    corpus, rows = dataset(args.questions, args.distractors)
    settings, built = index(corpus)
    variants = list(VARIANTS)
    if args.reranker:
        variants.append(("default + cross-encoder", {"reranker": args.reranker}))
    results = judge(settings, rows, variants)
    n_docs = sum(1 for _ in (corpus / "corpus.jsonl").open())
    out: dict[str, Any] = {
        "questions": len(rows),
        "documents": n_docs,
        "index": built,
        "variants": results,
    }
    tables = [
        table(
            f"SciFact test, {len(rows)} questions over {n_docs:,} documents",
            ["variant", "nDCG@10", "recall@10", "recall@100", "search p50 / p95 ms"],
            [
                [
                    r["variant"],
                    r["ndcg@10"],
                    r["recall@10"],
                    r["recall@100"],
                    f"{r['search_p50_ms']} / {r['search_p95_ms']}",
                ]
                for r in results
            ],
        )
    ]
    if args.tune:
        out["tune"] = tune(settings)
        tables.append(
            table(
                f"The fusion grid on SciFact train ({len(train_queries()[0])} questions), "
                "best first",
                ["variant", "nDCG@10", "recall@10", "recall@100"],
                [
                    [r["variant"], r["ndcg@10"], r["recall@10"], r["recall@100"]]
                    for r in out["tune"]
                ],
            )
        )
    bench.write(out, tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
