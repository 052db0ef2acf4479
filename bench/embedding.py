"""Embedding backends against torch fp32: speed ratio and cosine on the same texts, one run.

    .venv/bin/python bench/embedding.py                 # speed + cosine
    .venv/bin/python bench/embedding.py --ndcg          # + full SciFact nDCG@10 per backend

Passages: SciFact chunk texts exactly as `qa index` embeds them, batch 32. Queries: SciFact
questions one at a time (the query cache cleared). Every option runs on the same texts in the
same process, rounds interleaved, so a shared machine's drift hits all of them alike; a ratio
is option speed / torch fp32 speed from this one run. `--ndcg` runs `qa eval` on the whole of
SciFact (dense retrieval, k 10) once per backend, each on its own index (kept in
bench/out/work/embedding/). torch bf16 runs only on a CPU with AVX512-BF16 or AMX. Writes
bench/out/embedding.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, SCIFACT, WORK, Run, clean_env, machine, questions, table
from ingest import chunk_texts

MODEL = "all-MiniLM-L6-v2"
# Backends `qa eval --embedding-backend` takes (the nDCG runs).
EVAL_BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")


def passages(n_docs: int, n: int) -> list[str]:
    from qa.config import load_settings
    from qa.embedding.models import get_embedder

    folder = Path(tempfile.mkdtemp(prefix="qa-bench-backends-"))
    lines = (SCIFACT / "corpus.jsonl").read_text().splitlines()[:n_docs]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    settings = load_settings(corpus_dir=folder, _env_file=None)
    return chunk_texts(settings, get_embedder(MODEL))[:n]


def options(export_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Option name -> embedder, and why each missing option could not run."""
    from qa.embedding import runtime
    from qa.embedding.models import get_embedder
    from qa.errors import ConfigError

    found: dict[str, Any] = {}
    missing: dict[str, str] = {}

    def add(name: str, make: Callable[[], Any]) -> None:
        try:
            emb = make()
            emb.embed_documents(["warm up"] * 4)
            found[name] = emb
        except (ConfigError, ImportError, RuntimeError) as exc:
            missing[name] = f"{type(exc).__name__}: {exc}"

    add("torch-fp32", lambda: get_embedder(MODEL, backend="torch"))
    if {"avx512_bf16", "amx_bf16"} & set(machine()["flags"]):
        add("torch-bf16", lambda: get_embedder(MODEL, backend="torch", dtype="bfloat16"))
    for backend in ("onnx", "onnx-int8", "openvino"):
        add(backend, lambda b=backend: get_embedder(MODEL, backend=b, export_dir=export_dir))
    if "onnx" in found:
        # Thread counts: the shipped choice is one thread (runtime_threads); two for comparison.
        saved = runtime.runtime_threads
        runtime.runtime_threads = lambda: 2  # type: ignore[assignment]
        try:
            add("onnx-2-threads", lambda: _fresh("onnx", export_dir))
        finally:
            runtime.runtime_threads = saved  # type: ignore[assignment]
        add("onnx-int8-default", lambda: _int8_default(export_dir))
        # One session for document batches (what embedding_workers=1 runs); the shipped
        # default is one per core.
        add("onnx-1-worker", lambda: _fresh("onnx", export_dir, workers=1))
    if "onnx-int8" in found:
        add("onnx-int8-1-worker", lambda: _fresh("onnx-int8", export_dir, workers=1))
    return found, missing


def _fresh(backend: str, export_dir: Path, workers: int = 0) -> Any:
    from qa.embedding.runtime import ExportedEmbedder

    emb = ExportedEmbedder(MODEL, backend=backend, folder=export_dir, workers=workers)
    emb.dim  # noqa: B018 - loads it now
    return emb


def _int8_default(export_dir: Path) -> Any:
    """onnxruntime's quantize_dynamic with its defaults (all ops, per tensor), for the table."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from qa.embedding.runtime import onnxruntime_runner

    emb = _fresh("onnx", export_dir)
    fp32 = next(p for p in export_dir.glob("*-fp32-*.onnx"))
    target = export_dir / "bench-int8-default.onnx"
    # The fused graph's contrib ops carry no type information for the quantizer to infer.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    quantize_dynamic(fp32, target, weight_type=QuantType.QInt8, extra_options=extra)
    emb._run = onnxruntime_runner(target)
    return emb


def measure(embs: dict[str, Any], texts: list[str], queries: list[str], rounds: int) -> dict:
    doc_s: dict[str, list[float]] = {n: [] for n in embs}
    query_s: dict[str, list[float]] = {n: [] for n in embs}
    doc_vecs: dict[str, np.ndarray] = {}
    query_vecs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, emb in embs.items():
            t0 = time.perf_counter()
            doc_vecs[name] = emb.embed_documents(texts)
            doc_s[name].append(time.perf_counter() - t0)
            emb.clear_query_cache()
            rows = []
            t0 = time.perf_counter()
            for q in queries:
                rows.append(emb.embed_query(q))
            query_s[name].append(time.perf_counter() - t0)
            query_vecs[name] = np.stack(rows)
            emb.clear_query_cache()
    base_doc = statistics.fmean(doc_s["torch-fp32"])
    base_query = statistics.fmean(query_s["torch-fp32"])
    table = {}
    for name in embs:
        d, q = statistics.fmean(doc_s[name]), statistics.fmean(query_s[name])
        cos_d = np.sum(doc_vecs[name] * doc_vecs["torch-fp32"], axis=1)
        cos_q = np.sum(query_vecs[name] * query_vecs["torch-fp32"], axis=1)
        table[name] = {
            "passages_per_s": round(len(texts) / d, 1),
            "passages_x_fp32": round(base_doc / d, 2),
            "ms_per_query": round(1000 * q / len(queries), 2),
            "queries_x_fp32": round(base_query / q, 2),
            "min_cosine_passages": round(float(cos_d.min()), 5),
            "min_cosine_queries": round(float(cos_q.min()), 5),
            "mean_cosine_passages": round(float(cos_d.mean()), 5),
        }
    return table


def ndcg(backends: list[str], root: Path) -> dict[str, Any]:
    """Full SciFact nDCG@10 (dense) per backend: `qa eval`, each on its own index."""
    out: dict[str, Any] = {}
    env = clean_env()
    for backend in backends:
        report = root / f"eval-{backend}.json"
        cmd = [sys.executable, "-m", "qa.cli", "eval", str(SCIFACT), "--retrieval-only"]
        cmd += ["--retrieval", "dense", "-k", "10", "--embedding-backend", backend]
        cmd += ["--index", str(root / f"eval-scifact-{backend}"), "--json", str(report)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        if done.returncode != 0:
            out[backend] = {"error": f"exit {done.returncode}"}
            continue
        out[backend] = {
            "ndcg@10": _find(json.loads(report.read_text()), "ndcg@10"),
            "seconds": round(time.perf_counter() - t0, 1),
            "command": "qa " + " ".join(cmd[3:]),
        }
    base = out.get("torch", {}).get("ndcg@10")
    for row in out.values():
        if base is not None and "ndcg@10" in row:
            row["delta_vs_torch"] = round(row["ndcg@10"] - base, 4)
    return out


def _find(tree: Any, key: str) -> float:
    if isinstance(tree, dict):
        if key in tree:
            return float(tree[key])
        for value in tree.values():
            try:
                return _find(value, key)
            except KeyError:
                pass
    raise KeyError(key)


LABELS = {
    "torch-fp32": "torch fp32 (2 intra-op threads)",
    "torch-bf16": "torch bf16",
    "onnx": "onnx fp32, a session per core (what `auto` picks)",
    "onnx-1-worker": "onnx fp32, one session",
    "onnx-2-threads": "onnx fp32, one session with 2 threads",
    "onnx-int8": "onnx int8, MatMul per channel (`onnx-int8`)",
    "onnx-int8-1-worker": "onnx int8, one session",
    "onnx-int8-default": "onnx int8, quantize_dynamic defaults",
    "openvino": "openvino fp32",
}


def tables(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "speed" in result:
        rows = [
            [LABELS.get(name, name), r["passages_per_s"], r["passages_x_fp32"],
             r["ms_per_query"], r["queries_x_fp32"], r["min_cosine_passages"],
             r["min_cosine_queries"]]
            for name, r in result["speed"].items()
        ]  # fmt: skip
        missing = "; ".join(
            f"{k}: {v.split('. ')[0][:160]}" for k, v in result.get("unavailable", {}).items()
        )
        out.append(
            table(
                f"{result['passages']} SciFact passages (batch 32) and {result['queries']} "
                f"questions one at a time, {result['rounds']} rounds interleaved",
                [
                    "option",
                    "passages/s",
                    "passages ÷ torch fp32",
                    "ms/question",
                    "questions ÷ torch fp32",
                    "min cosine passages",
                    "min cosine questions",
                ],
                rows,
                f"Not available here: {missing}" if missing else "",
            )
        )
    if "ndcg" in result:
        rows = [
            [b, r.get("ndcg@10", r.get("error")), r.get("delta_vs_torch")]
            for b, r in result["ndcg"].items()
        ]
        out.append(
            table(
                "SciFact test (300 questions, 5,183 documents), dense retrieval, own index each",
                ["backend", "nDCG@10", "Δ vs torch fp32"],
                rows,
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ndcg", action="store_true", help="also full SciFact nDCG@10")
    parser.add_argument("--ndcg-only", action="store_true", help="only the nDCG runs")
    parser.add_argument("--backends", nargs="+", default=list(EVAL_BACKENDS))
    parser.add_argument("--work", type=Path, default=WORK / "embedding")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Run("embedding")
    result: dict[str, Any] = {}
    if not args.ndcg_only:
        texts = passages(600, args.passages)
        queries = questions(SCIFACT / "questions.jsonl", args.queries)
        embs, missing = options(args.work / "models")
        result.update(passages=len(texts), queries=len(queries), rounds=args.rounds)
        result["speed"] = measure(embs, texts, queries, args.rounds)
        result["unavailable"] = missing
    if args.ndcg or args.ndcg_only:
        result["ndcg"] = ndcg(args.backends, args.work)
    bench.write(result, tables(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
