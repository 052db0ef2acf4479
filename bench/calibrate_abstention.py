"""Fit the answer step's combiner (verifier + cheap features) and its two thresholds; report
held-out numbers.

    .venv/bin/python bench/calibrate_abstention.py [--verifier DIR] [--out bench/out]
        [--reuse-retrieval] [--reuse] [--write]

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

(CLAPnq's fold 0 trained the verifier and is left out here.) A logistic regression predicts
"the quoted sentence answers the question" from the features, each feature's weight kept to
its sensible sign (or dropped); the abstain threshold is the highest one whose false abstention
on the fit rows stays within `--max-false-abstention`, and the answer threshold the lowest one
at which at most `--max-unanswerable-answered` of the fit set's unanswerable questions are
given as answered. Each guard rule is kept only when it improves the fit rows' abstention F1.
`--write` saves the result as `combiner.json` beside the verifier.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answering.extractive.answerer import VERIFIED, ExtractiveAnswerer  # noqa: E402
from qa.answering.extractive.guards import GUARDS  # noqa: E402
from qa.answering.followup import rewrite_followup  # noqa: E402
from qa.answering.verifier import Verifier  # noqa: E402
from qa.config import load_settings  # noqa: E402
from qa.embedding.models import get_embedder  # noqa: E402
from qa.evaluation.metrics import contains_gold, percentile, token_f1  # noqa: E402
from qa.evaluation.questions import quotes_evidence  # noqa: E402
from qa.ingest.build import build_index  # noqa: E402
from qa.resources import VERIFIER_DIR  # noqa: E402
from qa.retrieval.retriever import Retriever  # noqa: E402
from qa.stores import open_store  # noqa: E402
from qa.training.verifier import auc  # noqa: E402
from qa.types import Chunk, Passage, Turn  # noqa: E402

SHARED = ROOT.parent / "shared"
SQUAD_TRAIN = SHARED / "train" / "squad2" / "dev-v2.0-labelled-half.json"
SQUAD_FIT_ARTICLES = ("Harvard_University", "Packet_switching", "Force")
SQUAD = SHARED / "eval" / "squad2-dev-subset"
CLAPNQ = SHARED / "eval" / "clapnq-dev-a"
DEMO = ROOT / "bench" / "demo_questions.jsonl"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", type=Path, default=VERIFIER_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--reuse", action="store_true", help="refit from the saved rows")
    parser.add_argument("--reuse-retrieval", action="store_true", help="re-run the answerer only")
    parser.add_argument("--max-false-abstention", type=float, default=0.08)
    parser.add_argument("--max-unanswerable-answered", type=float, default=0.12)
    parser.add_argument(
        "--write", action="store_true", help="save combiner.json beside the verifier"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "combiner-rows.json"
    if args.reuse and cache.exists():
        rows = [Row(**r) for r in json.loads(cache.read_text())]
    else:
        verifier = Verifier(args.verifier)
        verifier.combiner = None  # features and every guard rule, whatever was fitted before
        again = args.reuse_retrieval
        rows = []
        folder, questions = _squad_fit_set(args.out)
        rows += _rows(
            "squadfit", questions, ["fit"] * len(questions), folder, args.out, verifier, again
        )
        for name, src in (("squad", SQUAD), ("clapnq", CLAPNQ)):
            folder = args.out / f"{name}-corpus"
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
            rows += _rows(name, questions, roles, folder, args.out, verifier, again)
        demo = [json.loads(line) for line in DEMO.open()]
        rows += _rows(
            "demo", demo, ["heldout"] * len(demo), ROOT / "corpus", args.out, verifier, again
        )
        cache.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))

    fit = [r for r in rows if r.role == "fit"]
    x = np.array([r.x() for r in fit])
    y = np.array([float(r.correct) for r in fit])
    # Both fit sets shape the fit alike: ~1,000 SQuAD questions beside ~75 natural ones.
    sizes = {name: sum(r.set == name for r in fit) for name in {r.set for r in fit}}
    w = np.array([len(fit) / (len(sizes) * sizes[r.set]) for r in fit])
    beta = fit_monotone(x, y, w)
    parts = [[r for r in fit if r.set == name] for name in sorted(sizes)]
    grid = np.round(np.arange(0.01, 0.99, 0.01), 2)

    natural = [r for r in fit if r.set == "clapnq"]

    def thresholds(guards: set[str]) -> tuple[float, float]:
        """On the natural questions of the fit rows (what users ask; SQuAD's unanswerable
        questions are written to look answered, and a corpus like it calibrates its own with
        `qa calibrate`): the highest abstain threshold within the false-abstention budget, then
        the lowest answer threshold that gives few unanswerable questions as answered."""
        conf = confidence(natural, beta, guards)
        fa_cap, ua_cap = args.max_false_abstention, args.max_unanswerable_answered
        ok = [t for t in grid if outcomes(natural, conf, t, 1.0)["false_abstention"] <= fa_cap]
        abstain_t = float(max(ok)) if ok else float(grid[0])
        above = [
            t for t in grid
            if t >= abstain_t
            and outcomes(natural, conf, abstain_t, t)["unanswerable_answered"] <= ua_cap
        ]  # fmt: skip
        return abstain_t, float(min(above)) if above else 0.99

    def recall_at(sel: list[Row], guards: set[str]) -> float:
        """Abstention recall at false abstention <= the budget (the best threshold for `sel`)."""
        conf = confidence(sel, beta, guards)
        budget = args.max_false_abstention
        found = [
            o["abstention_recall"]
            for t in [*sorted(set(conf.tolist())), 1.0]
            if (o := outcomes(sel, conf, float(t), 1.0))["false_abstention"] <= budget
        ]  # fmt: skip
        return max(found, default=0.0)

    # A rule stays while it earns its keep on one kind of question at least: it is dropped
    # only when every fit set's abstention recall (at the false-abstention budget) is at least
    # as high without it.
    guards = set(GUARDS)
    for name in sorted(GUARDS):
        without = guards - {name}
        fired = sum(r.guard == name for r in fit)
        gains = [recall_at(part, guards) - recall_at(part, without) for part in parts]
        keep = any(g > 0 for g in gains)
        print(f"guard {name:<15} fires on {fired:3d} fit rows: recall gain per fit set "
              f"{[round(g, 3) for g in gains]} -> {'keep' if keep else 'drop'}")  # fmt: skip
        if not keep:
            guards = without
    abstain_t, answer_t = thresholds(guards)
    print("\nweights: " + ", ".join(f"{f}={b:.3f}" for f, b in zip(FEATURES, beta, strict=True)))
    print(
        f"guards kept: {sorted(guards)}; abstain_threshold {abstain_t:.2f}, "
        f"answer_threshold {answer_t:.2f}\n"
    )
    for name in ("squadfit", "clapnq", "squad", "demo"):
        for role in ("fit", "heldout"):
            sel = [r for r in rows if r.set == name and r.role == role]
            if sel:
                _print(
                    f"{name} {role}",
                    outcomes(sel, confidence(sel, beta, guards), abstain_t, answer_t),
                )
                print(f"  {'':<18} abstention recall at false abstention <= "
                      f"{args.max_false_abstention}: {recall_at(sel, guards):.3f}")  # fmt: skip
    # A corpus like SQuAD calibrates its own threshold (`qa calibrate`): the best abstention
    # F1 on the SQuAD fit articles, applied to the held-out SQuAD subset.
    squadfit = [r for r in fit if r.set == "squadfit"]
    conf = confidence(squadfit, beta, guards)
    t_squad = float(
        max(grid, key=lambda t: outcomes(squadfit, conf, float(t), 1.0)["abstention_f1"])
    )
    held = [r for r in rows if r.set == "squad" and r.role == "heldout"]
    if held:
        o = outcomes(held, confidence(held, beta, guards), t_squad, max(t_squad, answer_t))
        print(f"\nsquad heldout at a SQuAD-calibrated abstain threshold {t_squad:.2f}:")
        _print("squad heldout", o)
    if args.write:
        kept = [(f, float(b)) for f, b in zip(FEATURES, beta, strict=True) if b != 0.0]
        combiner = {
            "features": [f for f, _ in kept],
            "weights": [round(b, 4) for _, b in kept],
            "abstain_threshold": abstain_t,
            "answer_threshold": answer_t,
            "guards": sorted(guards),
            "fitted_on": "weights: SQuAD 2.0 dev Harvard_University, Packet_switching, Force "
            "and CLAPnq dev A crc32(id) % 4 == 2, weighted alike; thresholds: the CLAPnq rows",
        }
        path = args.verifier / "combiner.json"
        path.write_text(json.dumps(combiner, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
