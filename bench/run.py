"""Issue 7's benchmark in one command: writes bench/out/results.json and prints a table.

    .venv/bin/python bench/run.py --quick   # <= 10 min: ingest ratio, embedding options
                                            # (speed + nDCG@10 on a SciFact subset), /ask load
    .venv/bin/python bench/run.py           # + full SciFact quality, store at 100k/1M chunks,
                                            # `qa serve` holding 1M chunks (about an hour)

Every ratio compares two things measured in the same process, interleaved, so slow drifts of
a shared machine cancel out. bench/README.md explains each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_http  # noqa: E402
import bench_index  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "eval" / "scifact"
OUT = ROOT / "bench" / "out"
MODEL = "all-MiniLM-L6-v2"
# Option name -> get_embedder keyword arguments, and the eval override that selects it.
OPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "torch-fp32": ({}, "embedding_dtype=float32"),
    "torch-bf16": ({"dtype": "bfloat16"}, "embedding_dtype=bfloat16"),
    "torch-fp32-2proc": ({"processes": 2}, "embedding_processes=2"),
    "onnx": ({"backend": "onnx"}, "embedding_backend=onnx"),
    "onnx-int8": ({"backend": "onnx-int8"}, "embedding_backend=onnx-int8"),
    "openvino": ({"backend": "openvino"}, "embedding_backend=openvino"),
}


def scifact_texts(n_docs: int) -> list[str]:
    """Chunk embedding texts of the first SciFact documents, as `qa index` would embed them."""
    from qa.config import load_settings
    from qa.embedding.models import get_embedder

    folder = Path(tempfile.mkdtemp(prefix="qa-bench-texts-"))
    lines = (SCIFACT / "corpus.jsonl").read_text().splitlines()[:n_docs]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    settings = load_settings(corpus_dir=folder, _env_file=None)
    return bench_index.chunk_texts(settings, get_embedder(MODEL))


def embed_speed(texts: list[str], rounds: int) -> dict[str, Any]:
    """Seconds per option over the same texts, rounds interleaved; speed-up over torch fp32."""
    import numpy as np

    from qa.embedding.models import get_embedder
    from qa.errors import ConfigError

    embedders: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for name, (kwargs, _) in OPTIONS.items():
        try:
            embedders[name] = get_embedder(MODEL, batch_size=32, **kwargs)
        except ConfigError as exc:
            unavailable[name] = str(exc)
    for emb in embedders.values():
        if getattr(emb, "processes", 1) > 1:
            emb._worker_pool()  # start-up is not throughput
        emb.embed_documents(texts[:32])
    seconds: dict[str, list[float]] = {name: [] for name in embedders}
    vectors: dict[str, Any] = {}
    for _ in range(rounds):
        for name, emb in embedders.items():
            t0 = time.perf_counter()
            vectors[name] = emb.embed_documents(texts)
            seconds[name].append(time.perf_counter() - t0)
    for emb in embedders.values():
        if hasattr(emb, "close"):
            emb.close()
    base = statistics.fmean(seconds["torch-fp32"])
    options = {
        name: {
            "texts_per_s": round(len(texts) / statistics.fmean(s), 1),
            "speedup_vs_fp32": round(base / statistics.fmean(s), 2),
            "min_cosine_vs_fp32": round(
                float(np.min(np.sum(vectors[name] * vectors["torch-fp32"], axis=1))), 5
            ),
        }
        for name, s in seconds.items()
    }
    return {"texts": len(texts), "rounds": rounds, "options": options, "unavailable": unavailable}


def scifact_subset(folder: Path, n_questions: int, n_distractors: int) -> Path:
    """A SciFact slice: the first questions, their gold documents and other documents."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = (SCIFACT / "questions.jsonl").read_text().splitlines()[:n_questions]
    gold = {g for line in questions for g in json.loads(line)["gold_ids"]}
    corpus = (SCIFACT / "corpus.jsonl").read_text().splitlines()
    others = [line for line in corpus if json.loads(line)["id"] not in gold]
    keep = [line for line in corpus if json.loads(line)["id"] in gold]
    keep += random.Random(0).sample(others, n_distractors)
    (folder / "questions.jsonl").write_text("\n".join(questions) + "\n")
    (folder / "corpus.jsonl").write_text("\n".join(keep) + "\n")
    return folder


def ndcg(dataset: Path, option: str, index_root: Path | None, out: Path) -> dict[str, Any]:
    """nDCG@10 (dense retrieval) of torch fp32 and of `option`, each `qa eval` on its own index.

    Two runs rather than `--compare`: the fp32 run then reuses the default eval index
    (index/eval-<name>/) that `qa eval <dataset>` keeps, instead of building an identical one.
    """
    root = index_root or ROOT / "index"
    scores, commands, seconds = [], [], 0.0
    for name in ("torch-fp32", option):
        key, value = OPTIONS[name][1].split("=")
        cmd = [sys.executable, "-m", "qa.cli", "eval", str(dataset), "--retrieval-only"]
        cmd += ["--retrieval", "dense", "-k", "10", "--json", str(out.with_suffix(f".{name}.json"))]
        if name != "torch-fp32":
            cmd += [f"--{key.replace('_', '-')}", value]
        if index_root is not None or name != "torch-fp32":
            suffix = "" if name == "torch-fp32" else f"-{key}={value}"
            cmd += ["--index", str(root / f"eval-{dataset.name}{suffix}")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"})
        seconds += time.perf_counter() - t0
        report = json.loads(out.with_suffix(f".{name}.json").read_text())
        scores.append(_find(report, "ndcg@10"))
        commands.append("qa " + " ".join(cmd[3:]))
    return {
        "dataset": str(dataset),
        "commands": commands,
        "seconds": round(seconds, 1),
        "ndcg@10_torch-fp32": scores[0],
        f"ndcg@10_{option}": scores[1],
        "delta": round(scores[1] - scores[0], 4),
    }


def _find(tree: Any, key: str) -> float:
    """The first value under `key` anywhere in a JSON tree."""
    if isinstance(tree, dict):
        if key in tree:
            return float(tree[key])
        for value in tree.values():
            try:
                return _find(value, key)
            except KeyError:
                pass
    raise KeyError(key)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the <= 10 minute subset")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"quick": args.quick, "load_average_before": os.getloadavg()[0]}
    details: dict[str, Any] = {}

    with tempfile.TemporaryDirectory(prefix="qa-bench-run-") as tmp:
        work = Path(tmp)
        # 1. `qa index` vs the raw encoder on the same chunk texts.
        folder = work / "scifact-slice"
        folder.mkdir()
        lines = (SCIFACT / "corpus.jsonl").read_text().splitlines()[: 300 if args.quick else 2000]
        (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
        sci_q = bench_index.questions(SCIFACT / "questions.jsonl", 50)
        ingest = bench_index.bench_corpus("scifact", folder, sci_q, 32, work)
        details["ingest"] = ingest
        results["ingest_ratio_to_raw_encoder"] = ingest["build_vs_raw_ratio"]
        print(f"ingest: {ingest['build_vs_raw_ratio']} of the raw encoder", flush=True)

        # 2. Embedding options: speed here, quality with `qa eval`.
        texts = scifact_texts(120 if args.quick else 600)
        texts = texts[: 256 if args.quick else 1024]
        speed = embed_speed(texts, rounds=2 if args.quick else 3)
        details["embed_speed"] = speed
        best = max(
            (n for n in speed["options"] if n != "torch-fp32"),
            key=lambda n: speed["options"][n]["speedup_vs_fp32"],
        )
        results["embed_best_option"] = best
        results["embed_speedup_best_option"] = speed["options"][best]["speedup_vs_fp32"]
        print(f"embedding: best option {best}, {results['embed_speedup_best_option']}x", flush=True)
        if args.quick:
            subset = scifact_subset(work / "scifact-subset", 100, 400)
            quality = ndcg(subset, best, work, OUT / "embed_quality_quick.json")
        else:
            quality = ndcg(SCIFACT, best, None, OUT / "embed_quality.json")
        details["embed_quality"] = quality
        results["embed_best_option_ndcg_delta"] = quality["delta"]

    # 3. Serving: /ask under 1, 8 and 32 concurrent clients.
    http = bench_http.run(60 if args.quick else 400, [1, 8, 32])
    details["http"] = http
    by_clients = {r["clients"]: r for r in http["ask"]}
    results["ask_p50_ms_1_client"] = by_clients[1]["p50_ms"]
    results["ask_p99_ms_8_clients"] = by_clients[8]["p99_ms"]
    results["ask_errors"] = sum(r["errors"] for r in http["ask"])

    # 4. Scale (full run only): the store at 100k and 1M, `qa serve` holding 1M.
    if not args.quick:
        script = [sys.executable, str(ROOT / "bench" / "bench_store.py")]
        subprocess.run(
            [*script, "--sizes", "100000", "--out", str(OUT / "store-100k.json")],
            check=True,
            cwd=ROOT,
        )
        # At 1M: the kinds that can meet the goals (hnsw-flat and ivf-pq are measured at 100k).
        store_out = OUT / "store.json"
        cmd = [*script, "--sizes", "1000000", "--kinds", "flat", "hnsw", "ivf"]
        subprocess.run([*cmd, "--serve", "1000000", "--out", str(store_out)], check=True, cwd=ROOT)
        store = json.loads(store_out.read_text())
        details["store"] = ["bench/out/store-100k.json", "bench/out/store.json"]
        at_1m = next(s for s in store["sizes"] if s["n"] == 1_000_000)
        from qa.config import Settings

        ef = f"ef {Settings.model_fields['hnsw_ef_search'].default}"  # what `qa serve` uses
        served = next(r for r in at_1m["rows"] if r["kind"] == "hnsw" and r["knob"] == ef)
        results["search_1m_p50_ms"] = served["p50_ms"]
        results["search_1m_recall_at_10"] = served["recall_at_10"]
        results["serve_rss_mb_1m"] = store["serve"]["peak_rss_mb"]
        results["serve_ready_s_1m"] = store["serve"]["ready_s"]

    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = os.getloadavg()[0]
    (OUT / "results.json").write_text(json.dumps({**results, "details": details}, indent=2) + "\n")
    print_table(results)
    print(f"wrote {(OUT / 'results.json').relative_to(ROOT)}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
