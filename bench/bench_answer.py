"""The answer step's cost for a new question, with the trained verifier and without it.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_answer.py [--questions 200]

For the demo corpus (its question set) and CLAPnq dev A's 592 passages (its questions), builds
the index into bench/out, loads the pipeline as `qa serve` does and hands the answerer every
chunk's sentence vectors first (what serve's warm-up does before questions arrive), then asks
each question once, one at a time, and reports the pipeline's own `answer` timing (p50, p95)
with `verifier=builtin` and `verifier=off`, in one run. Also the process RSS before and after
the verifier is loaded and used. Writes bench/out/answer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_http import cpu_model, memory_mb  # noqa: E402

from qa.config import load_settings  # noqa: E402
from qa.embedding.models import get_embedder  # noqa: E402
from qa.ingest.build import build_index  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402

OUT = ROOT / "bench" / "out"
CLAPNQ = ROOT.parent / "shared" / "eval" / "clapnq-dev-a"


def rss_mb() -> float:
    return memory_mb(os.getpid())["VmRSS"]


def corpus_sets() -> list[tuple[str, Path, list[str]]]:
    demo = [json.loads(x)["question"] for x in (ROOT / "bench" / "demo_questions.jsonl").open()]
    sets = [("demo", ROOT / "corpus", demo)]
    if CLAPNQ.exists():
        folder = OUT / "clapnq-corpus"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CLAPNQ / "corpus.jsonl", folder / "corpus.jsonl")
        qs = [json.loads(x)["question"] for x in (CLAPNQ / "questions.jsonl").open()]
        sets.append(("clapnq", folder, qs))
    return sets


def measure(pipeline: Pipeline, questions: list[str]) -> dict[str, Any]:
    answerer: Any = pipeline.answerer()
    texts = answerer.warm_texts(pipeline.store.chunks(), limit=100_000)
    for i in range(0, len(texts), 64):
        batch = texts[i : i + 64]
        answerer.remember(batch, pipeline.embedder.embed_documents(batch))
    times = []
    for q in questions:
        answer = pipeline.ask(q)
        times.append(dict(answer.timings_ms)["answer"])
    times.sort()
    return {
        "questions": len(times),
        "answer_p50_ms": round(statistics.median(times), 2),
        "answer_p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    from qa.answering.verifier import load_verifier

    # What the verifier adds to a serving process: its session, loaded and run once.
    before = rss_mb()
    load_verifier().verify("When was the law passed?", ["It was passed in 2019."] * 6)
    verifier_mb = round(rss_mb() - before, 1)
    embedder = get_embedder("all-MiniLM-L6-v2")
    result: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "verifier_rss_mb": verifier_mb,
        "sets": {},
    }
    for name, corpus, questions in corpus_sets():
        settings = load_settings(
            corpus_dir=corpus, index_dir=OUT / f"answer-{name}-index", _env_file=None
        )
        build_index(settings, embedder=embedder)
        qs = questions[: args.questions]
        row: dict[str, Any] = {"passages_questions": len(qs)}
        for verifier in ("off", "builtin"):
            t0 = time.perf_counter()
            pipeline = Pipeline.load(settings.model_copy(update={"verifier": verifier}))
            pipeline.answerer()
            load_s = time.perf_counter() - t0
            row[verifier] = measure(pipeline, qs) | {"load_s": round(load_s, 2)}
            print(name, verifier, row[verifier], flush=True)
        result["sets"][name] = row
    result["load_after"] = os.getloadavg()[0]
    result["rss_end_mb"] = round(rss_mb(), 1)
    (OUT / "answer.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
