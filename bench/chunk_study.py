"""Chunk size against retrieval quality and indexing cost, on SciFact's *train* split.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/chunk_study.py [--docs 2000] [--grid 200:30 200:0 ...]

Issue 17 asks for no more chunks than quality needs. For each (chunk_tokens, chunk_overlap)
this indexes one corpus with the shipped `build_index` (the default embedding backend) and
scores the shipped retriever, hybrid (the default) and dense, on the train queries
(original/queries.jsonl + original/qrels/train.tsv, disjoint from the 300 test queries), at
document level: nDCG@10 and recall@100 over the top 100 chunks.

The corpus is every train query's relevant abstract plus random others (seed 0) up to
`--docs`, so one configuration indexes in minutes; with fewer distractors than the whole
corpus the absolute numbers are higher than on all 5,183 abstracts, the comparison between
rows is what this measures. Cost is reported two ways: the word pieces the encoder reads (exact,
the same on any machine) and index seconds (noisy on a shared machine; rows run one after the
other). Writes bench/out/chunk_study.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_index  # noqa: E402
from tune_retrieval import SCIFACT, score, train_queries  # noqa: E402

from qa.config import load_settings  # noqa: E402
from qa.embedding.models import embedder_for, resolve_backend  # noqa: E402
from qa.ingest.build import build_index  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402

OUT = ROOT / "bench" / "out"
GRID = ("200:30", "200:0", "128:20", "300:30", "512:30")


def corpus(folder: Path, n_docs: int, gold: list[set[str]]) -> int:
    """Write the study's corpus.jsonl into `folder`; return its document count."""
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    wanted = set().union(*gold)
    keep = [ln for ln in lines if json.loads(ln)["id"] in wanted]
    kept = set(keep)
    rest = [ln for ln in lines if ln not in kept]
    random.Random(0).shuffle(rest)
    keep += rest[: max(0, n_docs - len(keep))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(keep) + "\n", encoding="utf-8")
    return len(keep)


def run(
    work: Path,
    corpus_dir: Path,
    tokens: int,
    overlap: int,
    queries: list[str],
    gold: list[set[str]],
) -> dict[str, Any]:
    index = work / f"index-{tokens}-{overlap}"
    base = {"corpus_dir": corpus_dir, "index_dir": index, "embedding_cache": False}
    settings, _ = resolve_backend(
        load_settings(**base, chunk_tokens=tokens, chunk_overlap=overlap, _env_file=None)
    )
    embedder = embedder_for(settings)
    t0 = time.perf_counter()
    report = build_index(settings, embedder=embedder, rebuild=True)
    index_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        "chunk_tokens": tokens,
        "chunk_overlap": overlap,
        "backend": settings.embedding_backend,
        "index_s": round(index_s, 1),
        "load_avg_after": round(os.getloadavg()[0], 2),
    }
    texts = bench_index.chunk_texts(settings, embedder)  # what build_index embedded
    row["chunks"] = report.n_chunks
    # Counted as the encoder reads them: [CLS] + pieces + [SEP] (never truncated: qa's chunker
    # keeps each chunk within the model's limit).
    row["word_pieces"] = sum(embedder.count_tokens(texts)) + 2 * len(texts)
    vectors = embedder.embed_documents(queries)
    for retrieval in ("hybrid", "dense"):
        pipeline = Pipeline.load(settings.model_copy(update={"retrieval": retrieval}))
        metrics = score(pipeline, queries, vectors, gold)
        row.update({f"{retrieval}_{k}": round(v, 4) for k, v in metrics.items()})
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--grid", nargs="+", default=list(GRID), help="chunk_tokens:overlap")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    queries, gold = train_queries()
    work = args.work or Path(tempfile.mkdtemp(prefix="qa-chunk-study-"))
    n = corpus(work / "corpus", args.docs, gold)
    print(f"{len(queries)} train queries, {n} documents, work {work}", file=sys.stderr)
    rows = []
    for cell in args.grid:
        tokens, overlap = (int(x) for x in cell.split(":"))
        row = run(work, work / "corpus", tokens, overlap, queries, gold)
        rows.append(row)
        print(json.dumps(row), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "chunk_study.json").write_text(json.dumps({"docs": n, "rows": rows}, indent=2) + "\n")
    print(
        "\n| chunk_tokens:overlap | chunks | word pieces | index s | hybrid nDCG@10 "
        "| dense nDCG@10 | hybrid recall@100 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['chunk_tokens']}:{r['chunk_overlap']} | {r['chunks']:,} | "
            f"{r['word_pieces']:,} | {r['index_s']} | {r['hybrid_ndcg@10']:.4f} | "
            f"{r['dense_ndcg@10']:.4f} | {r['hybrid_recall@100']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
