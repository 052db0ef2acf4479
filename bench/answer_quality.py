"""Answer quality: the extractive answerer's abstention and answers on held-out questions,
the answer step's cost, and the fit of its combiner (verifier + cheap features, two thresholds).

    .venv/bin/python bench/answer_quality.py                # the shipped combiner, held out
    .venv/bin/python bench/answer_quality.py --fit          # refit it; report held out with it
    .venv/bin/python bench/answer_quality.py --fit --write  # and save it as combiner.json
    .venv/bin/python bench/answer_quality.py --reuse --fit  # refit from the saved rows (seconds)

Indexes five question sets with the shipped settings (real chunker, MiniLM, FAISS + BM25,
hybrid retrieval, top 5) and records, per question, the extractive answerer's features with
the trained verifier's reading of the best sentences:

| set | role |
| --- | --- |
| SQuAD 2.0 dev: Harvard_University, Packet_switching, Force (`shared/train/`) | fit (unseen) |
| CLAPnq dev A, crc32(id) % 4 == 2 | fit (never trained on) |
| CLAPnq dev A, odd crc32(id) | held out: reported |
| SQuAD 2.0 dev subset (`shared/eval/`, 5 articles) | held out: reported |
| the demo set (`bench/demo_questions.jsonl`) | held out: reported |

(CLAPnq's fold 0 trained the verifier and is left out here.) Without `--fit` the rows are scored
with the shipped `combiner.json`. With it, a logistic regression predicts "the quoted sentence
answers the question" from the features, each feature's weight kept to its sensible sign (or
dropped); the abstain threshold is the highest one whose false abstention on the fit rows stays
within `--max-false-abstention`, and the answer threshold the lowest one at which at most
`--max-unanswerable-answered` of the fit set's unanswerable questions are given as answered.
Each guard rule is kept only when it improves a fit set's abstention recall. `--write` saves the
result as `combiner.json` beside the verifier (`qa/answering/verifier/model/`); rerun the demo
gate (`scripts/test.sh`) after.

Speed (skip with `--no-speed`): the answer step for each new question, one at a time, on the
demo corpus and CLAPnq dev A's 592 passages, with every chunk's sentence vectors made first
(as `qa serve`'s warm-up does), with the verifier and without it (`verifier=off`); and the RSS
the verifier adds. Indexes and row caches stay in bench/out/work/answer_quality/. Writes
bench/out/answer_quality.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from common import CLAPNQ, DEMO_QUESTIONS, ROOT, SHARED, SQUAD, WORK, Run, clean_env, table

from qa.answering.extractive.answerer import VERIFIED, ExtractiveAnswerer
from qa.answering.extractive.guards import GUARDS
from qa.answering.followup import rewrite_followup
from qa.answering.verifier import Verifier
from qa.config import load_settings
from qa.embedding.models import get_embedder
from qa.evaluation.metrics import contains_gold, percentile, token_f1
from qa.evaluation.questions import quotes_evidence
from qa.ingest.build import build_index
from qa.pipeline import Pipeline
from qa.resources import VERIFIER_DIR
from qa.retrieval.retriever import Retriever
from qa.stores import open_store
from qa.training.verifier import auc
from qa.types import Chunk, Passage, Turn

SQUAD_TRAIN = SHARED / "train" / "squad2" / "dev-v2.0-labelled-half.json"
SQUAD_FIT_ARTICLES = ("Harvard_University", "Packet_switching", "Force")
DEMO = DEMO_QUESTIONS
FEATURES = (
    "bias", "verifier", "verifier_second", "top_score", "sentence_sim", "sentence_lex",
    "context_lex", "cue", "missing", "context_sim", "word_cover", "key_cover", "margin",
    "best_passage", "opposite", "no_typed_span",
)  # fmt: skip
# The direction each feature must push the confidence; a fit that flips one learned a quirk.
SIGNS = {"verifier": 1, "verifier_second": 1, "top_score": 1, "sentence_sim": 1,
         "sentence_lex": 1, "context_lex": 1, "cue": 1, "missing": -1, "context_sim": 1,
         "word_cover": 1, "key_cover": 1, "margin": 1, "best_passage": 1,
         "opposite": -1, "no_typed_span": -1}  # fmt: skip


@dataclasses.dataclass
class Row:
    id: str
    set: str
    role: str  # fit | heldout
    answerable: bool
    answers: list[str]
    features: dict[str, float]
    correct: bool
    short: str | None
    ms: float
    guard: str | None

    def x(self) -> list[float]:
        return [1.0 if f == "bias" else self.features.get(f, 0.0) for f in FEATURES]


def _squad_fit_set(out: Path) -> tuple[Path, list[dict]]:
    """The fit articles as a corpus folder (a document per paragraph) and a question list."""
    folder = out / "squadfit-corpus"
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(SQUAD_TRAIN.read_text())["data"]
    docs, questions = [], []
    for article in data:
        if article["title"] not in SQUAD_FIT_ARTICLES:
            continue
        for i, p in enumerate(article["paragraphs"]):
            doc_id = f"{article['title']}#{i}"
            docs.append({"id": doc_id, "title": article["title"], "text": p["context"]})
            for q in p["qas"]:
                answers = [a["text"] for a in q["answers"]]
                questions.append({"id": q["id"], "question": q["question"], "answers": answers,
                                  "answerable": not q["is_impossible"],
                                  "gold_ids": [doc_id]})  # fmt: skip
    with (folder / "corpus.jsonl").open("w") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    return folder, questions


def _retrieve(name: str, questions: list[dict], corpus_dir: Path, out: Path, reuse: bool):  # type: ignore[no-untyped-def]
    settings = load_settings(corpus_dir=corpus_dir, index_dir=out / f"{name}-index", _env_file=None)
    embedder = get_embedder(settings.embedding_model)
    cache = out / f"retrieved-{name}-k{settings.top_k}-{settings.retrieval}.json"
    if reuse and cache.exists():
        saved = json.loads(cache.read_text())
        passages = [
            tuple(Passage(Chunk(**c), score, rank) for c, score, rank in ps)
            for ps in saved["passages"]
        ]
        return embedder, open_store(settings), saved["standalone"], passages
    build_index(settings, embedder=embedder)
    store = open_store(settings)
    retriever = Retriever(store, embedder, settings)
    standalone = [
        rewrite_followup(q["question"], [Turn("user", h) for h in q.get("history", [])])
        for q in questions
    ]
    retrieved = retriever.retrieve_many(standalone, settings.top_k)
    cache.write_text(json.dumps({
        "standalone": standalone,
        "passages": [
            [[dataclasses.asdict(p.chunk), p.score, p.rank] for p in ps] for ps in retrieved
        ],
    }))  # fmt: skip
    return embedder, store, standalone, retrieved


def _rows(name: str, questions: list[dict], roles: list[str], corpus_dir: Path, out: Path,
          verifier: Verifier, reuse: bool) -> list[Row]:  # fmt: skip
    embedder, store, standalone, retrieved = _retrieve(name, questions, corpus_dir, out, reuse)
    answerer = ExtractiveAnswerer(
        embedder, abstain_threshold=0.0, answer_threshold=0.0, documents=store.document,
        verifier=verifier,
    )  # fmt: skip
    rows = []
    for i, (q, text, passages, role) in enumerate(
        zip(questions, standalone, retrieved, roles, strict=True)
    ):
        if role == "skip":
            continue
        if i % 500 == 0:
            print(f"{name}: {i}/{len(questions)} questions", flush=True)
        t0 = time.perf_counter()
        analysis = answerer.analyse(text, passages)
        ms = (time.perf_counter() - t0) * 1000
        quotes = [s.span.text for s in analysis.chosen]
        if q.get("evidence"):
            correct = q["answerable"] and quotes_evidence(quotes, q["evidence"])
        else:
            correct = q["answerable"] and bool(contains_gold(" ".join(quotes), q["answers"]))
        guard = analysis.guard.rule if analysis.guard is not None else None
        rows.append(Row(q["id"], name, role, q["answerable"], q["answers"],
                        {k: float(v) for k, v in analysis.features.items()}, correct,
                        analysis.short_answer(text), ms, guard))  # fmt: skip
    print(f"{name}: analysis p50 {percentile([r.ms for r in rows], 50):.1f} ms", flush=True)
    return rows


def fit_monotone(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    active = list(range(x.shape[1]))
    while True:
        beta = np.zeros(x.shape[1])
        beta[active] = fit_logistic(x[:, active], y, w)
        wrong = [i for i in active[1:] if np.sign(beta[i]) not in (0, SIGNS[FEATURES[i]])]
        if not wrong:
            return beta
        active.remove(max(wrong, key=lambda i: abs(beta[i])))


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-1) -> np.ndarray:
    """Weighted L2-regularised logistic regression by Newton's method (bias not penalised)."""
    beta = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        grad = x.T @ (w * (p - y)) + penalty * beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def confidence(rows: list[Row], beta: np.ndarray, guards: set[str]) -> np.ndarray:
    x = np.array([r.x() for r in rows])
    conf = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
    return np.where([r.guard in guards and not _verified(r) for r in rows], 0.0, conf)


def _verified(row: Row) -> bool:
    """The answer-type rule yields where the verifier reads the sentence as the answer."""
    p = 1.0 / (1.0 + math.exp(-row.features.get("verifier", -30.0)))
    return row.guard == "answer_type" and p >= VERIFIED


def outcomes(
    rows: list[Row], conf: np.ndarray, abstain_t: float, answer_t: float
) -> dict[str, float]:
    ans = [i for i, r in enumerate(rows) if r.answerable]
    una = [i for i, r in enumerate(rows) if not r.answerable]
    abstained = conf < abstain_t
    answered = conf >= answer_t
    tp = int(sum(abstained[i] for i in una))
    fp = int(sum(abstained[i] for i in ans))
    prec = tp / (tp + fp) if tp + fp else math.nan
    rec = tp / len(una) if una else math.nan
    given = [i for i in ans if answered[i]]
    shown = [i for i in ans if not abstained[i]]
    shorts = [token_f1(rows[i].short or "", rows[i].answers) if answered[i] else 0.0 for i in ans]
    return {
        "n": len(rows),
        "auc": auc([r.answerable for r in rows], conf),
        "abstention_recall": rec,
        "false_abstention": fp / len(ans) if ans else math.nan,
        "abstention_f1": 2 * tp / (2 * tp + fp + (len(una) - tp)) if tp else 0.0,
        "abstention_precision": prec,
        "answerable_answered": len(given) / len(ans) if ans else math.nan,
        "unanswerable_answered": float(np.mean([answered[i] for i in una])) if una else math.nan,
        "answered_correct": float(np.mean([rows[i].correct for i in given])) if given else math.nan,
        "shown_correct": float(np.mean([rows[i].correct for i in shown])) if shown else math.nan,
        "short_f1": float(np.mean(shorts)) if shorts else math.nan,
    }


def _print(label: str, m: dict[str, float]) -> None:
    print(f"  {label:<18} n={m['n']:4d} AUC {m['auc']:.3f} | abstention R "
          f"{m['abstention_recall']:.3f} "
          f"at FA {m['false_abstention']:.3f} (F1 {m['abstention_f1']:.3f}) | answered: answerable "
          f"{m['answerable_answered']:.3f} unanswerable {m['unanswerable_answered']:.3f} | "
          "answered "
          f"quotes right {m['answered_correct']:.3f}, shown {m['shown_correct']:.3f} | short F1 "
          f"{m['short_f1']:.3f}")  # fmt: skip


def collect(args: argparse.Namespace) -> list[Row]:
    """Every question's features (with the verifier's reading), from the saved rows or anew."""
    cache = args.work / "combiner-rows.json"
    if args.reuse and cache.exists():
        return [Row(**r) for r in json.loads(cache.read_text())]
    verifier = Verifier(args.verifier)
    verifier.combiner = None  # features and every guard rule, whatever was fitted before
    again = args.reuse_retrieval
    rows = []
    folder, questions = _squad_fit_set(args.work)
    rows += _rows(
        "squadfit", questions, ["fit"] * len(questions), folder, args.work, verifier, again
    )
    for name, src in (("squad", SQUAD), ("clapnq", CLAPNQ)):
        folder = args.work / f"{name}-corpus"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(src / "corpus.jsonl", folder / "corpus.jsonl")
        questions = [json.loads(line) for line in (src / "questions.jsonl").open()]
        if name == "clapnq":
            roles = []
            for q in questions:
                h = zlib.crc32(q["id"].encode())
                roles.append("heldout" if h % 2 else ("fit" if h % 4 == 2 else "skip"))
        else:
            roles = ["heldout"] * len(questions)
        rows += _rows(name, questions, roles, folder, args.work, verifier, again)
    demo = [json.loads(line) for line in DEMO.open()]
    rows += _rows(
        "demo", demo, ["heldout"] * len(demo), ROOT / "corpus", args.work, verifier, again
    )
    cache.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    return rows


class Fit:
    """A combiner: weights over FEATURES, the guard rules it keeps, its two thresholds."""

    def __init__(self, beta: np.ndarray, guards: set[str], abstain_t: float, answer_t: float):
        self.beta, self.guards, self.abstain_t, self.answer_t = beta, guards, abstain_t, answer_t

    @classmethod
    def shipped(cls, folder: Path) -> Fit:
        saved = json.loads((folder / "combiner.json").read_text())
        unknown = set(saved["features"]) - set(FEATURES)
        if unknown:
            raise SystemExit(f"combiner.json names features this script lacks: {sorted(unknown)}")
        beta = np.zeros(len(FEATURES))
        for name, weight in zip(saved["features"], saved["weights"], strict=True):
            beta[FEATURES.index(name)] = weight
        return cls(
            beta, set(saved["guards"]), saved["abstain_threshold"], saved["answer_threshold"]
        )

    def confidence(self, rows: list[Row]) -> np.ndarray:
        return confidence(rows, self.beta, self.guards)


def recall_at(sel: list[Row], beta: np.ndarray, guards: set[str], budget: float) -> float:
    """Abstention recall at false abstention <= the budget (the best threshold for `sel`)."""
    conf = confidence(sel, beta, guards)
    found = [
        o["abstention_recall"]
        for t in [*sorted(set(conf.tolist())), 1.0]
        if (o := outcomes(sel, conf, float(t), 1.0))["false_abstention"] <= budget
    ]  # fmt: skip
    return max(found, default=0.0)


def fit(rows: list[Row], args: argparse.Namespace) -> Fit:
    """Weights on the fit rows, then the guard rules that earn their keep, then thresholds."""
    fit_rows = [r for r in rows if r.role == "fit"]
    x = np.array([r.x() for r in fit_rows])
    y = np.array([float(r.correct) for r in fit_rows])
    # Both fit sets shape the fit alike: ~1,000 SQuAD questions beside ~75 natural ones.
    sizes = {name: sum(r.set == name for r in fit_rows) for name in {r.set for r in fit_rows}}
    w = np.array([len(fit_rows) / (len(sizes) * sizes[r.set]) for r in fit_rows])
    beta = fit_monotone(x, y, w)
    parts = [[r for r in fit_rows if r.set == name] for name in sorted(sizes)]
    budget = args.max_false_abstention
    # A rule stays while it earns its keep on one kind of question at least: it is dropped
    # only when every fit set's abstention recall (at the false-abstention budget) is at least
    # as high without it.
    guards = set(GUARDS)
    for name in sorted(GUARDS):
        without = guards - {name}
        fired = sum(r.guard == name for r in fit_rows)
        gains = [
            recall_at(part, beta, guards, budget) - recall_at(part, beta, without, budget)
            for part in parts
        ]
        keep = any(g > 0 for g in gains)
        print(f"guard {name:<15} fires on {fired:3d} fit rows: recall gain per fit set "
              f"{[round(g, 3) for g in gains]} -> {'keep' if keep else 'drop'}")  # fmt: skip
        if not keep:
            guards = without
    # Thresholds on the natural questions of the fit rows (what users ask; SQuAD's unanswerable
    # questions are written to look answered, and a corpus like it calibrates its own with
    # `qa calibrate`): the highest abstain threshold within the false-abstention budget, then
    # the lowest answer threshold that gives few unanswerable questions as answered.
    natural = [r for r in fit_rows if r.set == "clapnq"]
    grid = np.round(np.arange(0.01, 0.99, 0.01), 2)
    conf = confidence(natural, beta, guards)
    ua_cap = args.max_unanswerable_answered
    ok = [t for t in grid if outcomes(natural, conf, t, 1.0)["false_abstention"] <= budget]
    abstain_t = float(max(ok)) if ok else float(grid[0])
    above = [
        t for t in grid
        if t >= abstain_t
        and outcomes(natural, conf, abstain_t, t)["unanswerable_answered"] <= ua_cap
    ]  # fmt: skip
    answer_t = float(min(above)) if above else 0.99
    print("weights: " + ", ".join(f"{f}={b:.3f}" for f, b in zip(FEATURES, beta, strict=True)))
    return Fit(beta, guards, abstain_t, answer_t)


def write(combiner: Fit, folder: Path) -> Path:
    kept = [(f, float(b)) for f, b in zip(FEATURES, combiner.beta, strict=True) if b != 0.0]
    saved = {
        "features": [f for f, _ in kept],
        "weights": [round(b, 4) for _, b in kept],
        "abstain_threshold": combiner.abstain_t,
        "answer_threshold": combiner.answer_t,
        "guards": sorted(combiner.guards),
        "fitted_on": "weights: SQuAD 2.0 dev Harvard_University, Packet_switching, Force "
        "and CLAPnq dev A crc32(id) % 4 == 2, weighted alike; thresholds: the CLAPnq rows",
    }
    path = folder / "combiner.json"
    path.write_text(json.dumps(saved, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def quality(rows: list[Row], combiner: Fit, budget: float) -> dict[str, Any]:
    """Per set and role: outcomes at the combiner's thresholds and recall at the budget."""
    out: dict[str, Any] = {}
    for name in ("squadfit", "clapnq", "squad", "demo"):
        for role in ("fit", "heldout"):
            sel = [r for r in rows if r.set == name and r.role == role]
            if sel:
                o = outcomes(sel, combiner.confidence(sel), combiner.abstain_t, combiner.answer_t)
                o["recall_at_budget"] = recall_at(sel, combiner.beta, combiner.guards, budget)
                out[f"{name} {role}"] = {k: _num(v) for k, v in o.items()}
                _print(f"{name} {role}", o)
    return out


def _num(v: float) -> float | int | None:
    if isinstance(v, int):
        return v
    return None if math.isnan(v) else round(float(v), 3)


def speed(n_questions: int, work: Path) -> dict[str, Any]:
    """The answer step for new questions, sentence vectors warm, verifier on and off."""
    out: dict[str, Any] = {"verifier_rss_mb": verifier_rss_mb()}
    demo = [json.loads(x)["question"] for x in DEMO.open()]
    sets = [("demo", ROOT / "corpus", demo)]
    if CLAPNQ.exists():
        folder = work / "clapnq-corpus"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CLAPNQ / "corpus.jsonl", folder / "corpus.jsonl")
        sets.append(("clapnq", folder, [json.loads(x)["question"] for x in
                                       (CLAPNQ / "questions.jsonl").open()]))  # fmt: skip
    embedder = get_embedder("all-MiniLM-L6-v2")
    for name, corpus, questions in sets:
        settings = load_settings(
            corpus_dir=corpus, index_dir=work / f"speed-{name}-index", _env_file=None
        )
        build_index(settings, embedder=embedder)
        row: dict[str, Any] = {"questions": len(questions[:n_questions])}
        for verifier in ("off", "builtin"):
            pipeline = Pipeline.load(settings.model_copy(update={"verifier": verifier}))
            row[verifier] = answer_times(pipeline, questions[:n_questions])
            print(name, verifier, row[verifier], flush=True)
        out[name] = row
    return out


VERIFIER_RSS = """
import json, os, sys
sys.path.insert(0, "bench")
from httpload import memory_mb
from qa.answering.verifier import load_verifier
before = memory_mb(os.getpid())["VmRSS"]
load_verifier().verify("When was the law passed?", ["It was passed in 2019."] * 6)
print(json.dumps(memory_mb(os.getpid())["VmRSS"] - before))
"""


def verifier_rss_mb() -> float:
    """The RSS a process gains by loading the verifier and using it once (a fresh process: this
    one loaded it long ago)."""
    done = subprocess.run(
        [sys.executable, "-c", VERIFIER_RSS],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return round(float(done.stdout.strip().splitlines()[-1]), 1)


def answer_times(pipeline: Pipeline, questions: list[str]) -> dict[str, Any]:
    answerer: Any = pipeline.answerer()
    texts = answerer.warm_texts(pipeline.store.chunks(), limit=100_000)
    for i in range(0, len(texts), 64):
        batch = texts[i : i + 64]
        answerer.remember(batch, pipeline.embedder.embed_documents(batch))
    times = sorted(dict(pipeline.ask(q).timings_ms)["answer"] for q in questions)
    return {
        "answer_p50_ms": round(statistics.median(times), 2),
        "answer_p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
    }


def tables(result: dict[str, Any], budget: float) -> list[dict[str, Any]]:
    q = result["quality"]
    labels = {
        "clapnq heldout": "CLAPnq dev A, odd ids",
        "squad heldout": "SQuAD 2.0 dev subset",
        "demo heldout": "demo set",
        "squadfit fit": "SQuAD fit articles (fit)",
        "clapnq fit": "CLAPnq quarter (fit)",
    }
    rows = [
        [labels.get(k, k), m["n"], m["auc"], m["recall_at_budget"], m["answerable_answered"],
         m["unanswerable_answered"], m["abstention_recall"], m["false_abstention"],
         m["answered_correct"], m["short_f1"]]
        for k, m in q.items()
    ]  # fmt: skip
    c = result["combiner"]
    out = [
        table(
            f"Answerable or not, {'a new fit' if result['fitted'] else 'the shipped combiner'} "
            f"(abstain below {c['abstain_threshold']}, answer from {c['answer_threshold']})",
            [
                "questions",
                "n",
                "AUC",
                f"abstention recall at false abstention <= {budget}",
                "answerable answered",
                "unanswerable answered",
                "abstention recall",
                "false abstention",
                "answered quoting gold",
                "short-answer F1",
            ],
            rows,
            "Rows marked (fit) are what the combiner was fitted on; the others are held out.",
        )
    ]
    s = result.get("speed")
    if s:
        rows = [
            [name, r["questions"], f"{r['builtin']['answer_p50_ms']} / "
             f"{r['builtin']['answer_p95_ms']}",
             f"{r['off']['answer_p50_ms']} / {r['off']['answer_p95_ms']}"]
            for name, r in s.items() if isinstance(r, dict)
        ]  # fmt: skip
        out.append(
            table(
                "The answer step for a new question, sentence vectors warm (ms)",
                ["corpus", "questions", "verifier p50 / p95", "`verifier=off` p50 / p95"],
                rows,
                f"RSS the verifier adds once loaded and used: {s['verifier_rss_mb']} MB.",
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", type=Path, default=VERIFIER_DIR)
    parser.add_argument("--work", type=Path, default=WORK / "answer_quality")
    parser.add_argument("--fit", action="store_true", help="refit the combiner on the fit sets")
    parser.add_argument("--write", action="store_true", help="with --fit: save combiner.json")
    parser.add_argument("--reuse", action="store_true", help="the saved rows, not a new pass")
    parser.add_argument("--reuse-retrieval", action="store_true", help="re-run the answerer only")
    parser.add_argument("--no-speed", action="store_true", help="skip the answer-step timing")
    parser.add_argument("--speed-questions", type=int, default=200)
    parser.add_argument("--max-false-abstention", type=float, default=0.08)
    parser.add_argument("--max-unanswerable-answered", type=float, default=0.12)
    args = parser.parse_args()
    if args.write and not args.fit:
        parser.error("--write saves a new fit: add --fit")
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Run("answer_quality")
    rows = collect(args)
    combiner = fit(rows, args) if args.fit else Fit.shipped(args.verifier)
    print(f"guards: {sorted(combiner.guards)}; abstain_threshold {combiner.abstain_t:.2f}, "
          f"answer_threshold {combiner.answer_t:.2f}")  # fmt: skip
    result: dict[str, Any] = {
        "fitted": args.fit,
        "combiner": {
            "abstain_threshold": combiner.abstain_t,
            "answer_threshold": combiner.answer_t,
            "guards": sorted(combiner.guards),
            "weights": {
                f: round(float(b), 4)
                for f, b in zip(FEATURES, combiner.beta, strict=True)
                if b != 0.0
            },
        },
        "quality": quality(rows, combiner, args.max_false_abstention),
    }
    if args.write:
        write(combiner, args.verifier)
    if not args.no_speed:
        result["speed"] = speed(args.speed_questions, args.work)
    bench.write(result, tables(result, args.max_false_abstention))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
