"""Tune the hybrid retriever's fusion on SciFact's *train* split; judge only on test afterwards.

    .venv/bin/python bench/tune_retrieval.py [--index index/eval-scifact] [--out bench/out]

Runs the shipped `qa.retrieval.retriever.Retriever` (so what is tuned is what ships) over the
train queries of BEIR SciFact (original/queries.jsonl + original/qrels/train.tsv, disjoint
from the 300 test queries) for a grid of fusion settings and feedback constants, and prints
document-level nDCG@10 / recall@10 / recall@100 (over the top 100 chunks) for each, best
first. The index is the one `qa eval ../shared/eval/scifact` builds (run that first). Then
check the winner on test with `qa eval ../shared/eval/scifact --retrieval-only --fusion-weight W`.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import qa.retrieval.retriever as retrieval  # noqa: E402
from qa.config import load_settings  # noqa: E402
from qa.evaluation.metrics import dedupe, ndcg_at_k, recall_at_k  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"


def train_queries() -> tuple[list[str], list[set[str]]]:
    """Train-split query texts and their relevant document ids."""
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


def score(
    pipeline: Pipeline, queries: list[str], vectors: np.ndarray, gold: list[set[str]]
) -> dict[str, float]:
    """Document-level metrics of the pipeline's retriever over the queries."""
    n10 = r10 = r100 = 0.0
    ranked = pipeline.retriever.retrieve_with_vectors(queries, vectors, 100)
    for passages, g in zip(ranked, gold, strict=True):
        docs = dedupe(p.chunk.doc_id for p in passages)
        n10 += ndcg_at_k(docs, g, 10)
        r10 += recall_at_k(docs, g, 10)
        r100 += recall_at_k(docs, g, 100)
    n = len(queries)
    return {"ndcg@10": n10 / n, "recall@10": r10 / n, "recall@100": r100 / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=ROOT / "index" / "eval-scifact")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    queries, gold = train_queries()
    print(f"{len(queries)} train queries", file=sys.stderr)

    variants: list[tuple[str, dict[str, object], tuple[float, int]]] = [
        ("dense", {"retrieval": "dense"}, (0.0, 0)),
    ]
    variants.append(("rrf k=60", {"fusion": "rrf", "rrf_k": 60, "rescore": False}, (0, 0)))
    for w in (0.4, 0.5, 0.6, 0.7, 0.8):
        variants.append((f"convex w={w}", {"fusion_weight": w, "rescore": False}, (0, 0)))
    for w, fb, docs in itertools.product((0.5, 0.6, 0.7, 0.8), (0.3, 0.6), (3,)):
        variants.append(
            (f"convex w={w} + feedback {fb}x top{docs}", {"fusion_weight": w}, (fb, docs))
        )
    rows = []
    vectors = None
    base = {"index_dir": args.index, "corpus_dir": args.index.with_name("eval-scifact.corpus")}
    for name, overrides, (fb, docs) in variants:
        retrieval.FEEDBACK_WEIGHT, retrieval.FEEDBACK_DOCS = fb, docs
        settings = load_settings(**base, **overrides)
        pipeline = Pipeline.load(settings)
        t0 = time.perf_counter()
        if vectors is None:
            vectors = pipeline.embedder.embed_documents(queries)
        metrics = score(pipeline, queries, vectors, gold)
        ms = (time.perf_counter() - t0) * 1000 / len(queries)
        rows.append({"variant": name, **metrics, "ms_per_query_k300": ms})
        print(f"{name:40s} " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
    rows.sort(key=lambda r: -float(r["ndcg@10"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_retrieval.json").write_text(json.dumps(rows, indent=2))
    print("\nbest on train:", rows[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
