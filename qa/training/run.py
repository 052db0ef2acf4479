"""`qa train-verifier`: rebuild the shipped verifier (the defaults), or fine-tune on your own set.

The defaults are the shipped recipe, from a checkout beside `shared/` (public data):
- SQuAD 2.0 (`shared/train/squad2/`): every article but the two that the SQuAD evaluation
  subset shares (Normans, Computational_complexity_theory) and the three held out for fitting
  the answer step's combiner and for reporting here (`HOLDOUT_ARTICLES`).
- CLAPnq dev half A (`shared/eval/clapnq-dev-a`), split by a hash of the question id into four
  folds: fold 0 is trained on, fold 2 is held out with the SQuAD articles above, folds 1 and 3
  (the odd ids) are never used here, so that answer-level numbers on them stay held out.

`--set FOLDER` adds a `qa eval` dataset folder of your own (`corpus.jsonl` + `questions.jsonl`);
a quarter of its questions (by id hash) is held out and reported before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from qa.training.pairs import Pair, load_question_set, load_squad

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SQUAD_FILES = ("train-v2.0-first10articles.json", "dev-v2.0-labelled-half.json")
EVAL_ARTICLES = ("Normans", "Computational_complexity_theory")
HOLDOUT_ARTICLES = ("Harvard_University", "Packet_switching", "Force")
PACKAGED = ROOT / "qa" / "answering" / "verifier" / "model"
SOURCES = {
    "squad": "SQuAD 2.0 (Rajpurkar et al. 2018), CC BY-SA 4.0: the first 10 train articles and "
    "the labelled half of dev, less Normans and Computational_complexity_theory (in the "
    "evaluation subset) and Harvard_University, Packet_switching, Force (held out)",
    "clapnq": "CLAPnq dev half A (Rosenthal et al. 2024; Natural Questions, CC BY-SA 3.0; "
    "Apache-2.0 repository): the quarter of questions with crc32(id) % 4 == 0",
}

EXAMPLES = """\
examples:
  qa train-verifier                              # rebuild the shipped verifier from public data
  qa train-verifier --set my-set/ --out my-verifier/   # fine-tune on your own qa eval set too
  QA_VERIFIER=$PWD/my-verifier qa serve          # answer with it"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qa train-verifier",
        description=__doc__.split("\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=PACKAGED,
        metavar="DIR",
        help="model folder to write (default: the package's)",
    )
    parser.add_argument(
        "--squad-dir",
        type=Path,
        default=SHARED / "train" / "squad2",
        metavar="DIR",
        help="SQuAD 2.0 files (default: shared/train/squad2 beside the checkout)",
    )
    parser.add_argument(
        "--clapnq",
        type=Path,
        default=SHARED / "eval" / "clapnq-dev-a",
        metavar="DIR",
        help="CLAPnq dev half A (default: shared/eval/clapnq-dev-a beside the checkout)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a qa eval dataset folder of your own (repeatable)",
    )
    parser.add_argument("--no-public", action="store_true", help="train on --set folders only")
    parser.add_argument(
        "--epochs", type=float, default=2.0, metavar="X", help="passes over the pairs (default: 2)"
    )
    parser.add_argument(
        "--max-pairs", type=int, default=None, metavar="N", help="a slice (a smoke test)"
    )
    parser.add_argument(
        "--seed", type=int, default=13, metavar="N", help="random seed (default: 13)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, metavar="N", help="torch threads (default: 2)"
    )
    parser.add_argument("--base", default=None, metavar="DIR", help="start from this model folder")
    parser.add_argument("--fp32", action="store_true", help="never quantise")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # also under `qa`, which set WARNING

    from qa.training.verifier import TrainConfig, export, train

    train_pairs: list[Pair] = []
    heldout: list[Pair] = []
    sources: list[str] = []
    missing = [n for n in SQUAD_FILES if not (args.squad_dir / n).is_file()]
    if not args.no_public and missing:
        print(
            f"The SQuAD 2.0 files {', '.join(missing)} are not in {args.squad_dir}. Point "
            "--squad-dir at them (shared/train/squad2 beside a checkout), or train on your own "
            "set alone: --no-public --set FOLDER.",
            file=sys.stderr,
        )
        return 2
    for folder in args.sets:
        if not (folder / "questions.jsonl").is_file() or not (folder / "corpus.jsonl").is_file():
            print(
                f"{folder} is no qa eval dataset folder: it needs corpus.jsonl and "
                "questions.jsonl.",
                file=sys.stderr,
            )
            return 2
    if not args.no_public:
        for name in SQUAD_FILES:
            path = args.squad_dir / name
            train_pairs += load_squad(path, exclude_titles=EVAL_ARTICLES + HOLDOUT_ARTICLES)
            heldout += load_squad(path, only_titles=HOLDOUT_ARTICLES)
        sources.append(SOURCES["squad"])
        if args.clapnq.exists():
            # Natural questions are scarce beside SQuAD and closest to what users ask: seen 3x.
            train_pairs += load_question_set(args.clapnq, keep=[0], folds=4) * 3
            heldout += load_question_set(args.clapnq, keep=[2], folds=4)
            sources.append(SOURCES["clapnq"])
    for folder in args.sets:
        train_pairs += load_question_set(folder, keep=[0, 1, 2], folds=4)
        heldout += load_question_set(folder, keep=[3], folds=4)
        sources.append(f"{folder.name}: your question set (3 of 4 folds by id hash)")
    if not train_pairs:
        print("No training pairs: give --set FOLDER or the public data folders.", file=sys.stderr)
        return 2
    positives = sum(p.label for p in train_pairs)
    logging.info(
        "%d training pairs (%d positive), %d held out", len(train_pairs), positives, len(heldout)
    )
    config = TrainConfig(
        epochs=args.epochs, seed=args.seed, threads=args.threads, max_pairs=args.max_pairs
    )
    began = time.monotonic()
    net, tokenizer, report = train(train_pairs, heldout, config, base=args.base)
    logging.info(
        "trained in %.1f min; held out: %s", (time.monotonic() - began) / 60, report.heldout
    )
    meta = export(
        net,
        tokenizer,
        args.out,
        heldout=heldout,
        report=report,
        sources=sources,
        quantize=not args.fp32,
    )
    logging.info(
        "wrote %s (%s): %s",
        args.out,
        meta["precision"],
        {k: meta[k] for k in meta if k.startswith("heldout")},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
