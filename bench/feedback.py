"""Feedback closes the loop: answers marked through the HTTP API become a question set, and the
abstention threshold fitted on one half of them is measured on the other half.

    .venv/bin/python bench/feedback.py [--max-false-abstention 0.1] [--sweep 0.05 0.1 0.15 0.2]

A stand-in for people: CLAPnq dev A (`shared/eval/clapnq-dev-a/`) is indexed with `qa index`,
served with `qa serve`, and every question is asked with POST /ask and marked with POST /feedback
by its public label, as a careful reader would mark it:

| the question | the answer | the mark |
| --- | --- | --- |
| unanswerable | abstained | helpful ("not in the documents" was right) |
| unanswerable | answered | not helpful, should_abstain |
| answerable | abstained | not helpful, should_answer, correction + evidence (a gold sentence) |
| answerable | answered, quoting a gold sentence | helpful |
| answerable | answered, no gold sentence quoted | not helpful, wrong_answer, correction, evidence |

The fit half (even crc32 of the id) is marked first, the held-out half (odd crc32, the half
bench/answer_quality.py also holds out) after it, each in crc32 order (not the file's, which
lists the answerable questions first), so `qa calibrate --feedback --holdout H` (H the
held-out share) splits by time exactly there: it fits on the first half and reports the second.
It runs once per false-abstention budget of `--sweep` (`--dry-run --json`: the held-out effect
of each), then saves the threshold of `--max-false-abstention`; `qa eval` runs the held-out
half's public labels before and after that, and `qa eval --feedback --report` writes the HTML
report with its feedback section. One person's worth (`--few`, 20): the exported file cut to the
first 20 marks plus the held-out half, calibrated on the 20, reported on the same half.
Everything lives in bench/out/work/feedback/ (rebuilt each run); writes bench/out/feedback.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import httpx
from common import CLAPNQ, ROOT, WORK, Run, clean_env, table
from httpload import stop, time_to_ready

QA = [sys.executable, "-m", "qa.cli"]
METRICS = (
    ("abstention recall", "abstention.recall"),
    ("false abstention", "abstention.false_abstention_rate"),
    ("abstention F1", "abstention.f1"),
    ("unanswerable answered", "kinds.unanswerable_answered"),
    ("answers quote gold", "answers.quotes_evidence"),
    ("answer F1", "answers.f1"),
)


def qa(*args: Any, capture: bool = False) -> str:
    """Run `qa ARGS` (fails loudly); its stdout when `capture`."""
    cmd = [*QA, *(str(a) for a in args)]
    print("$", " ".join(cmd[2:]), flush=True)
    done = subprocess.run(cmd, env=clean_env(), text=True, capture_output=capture, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr or ''}")
    return done.stdout or ""


def held_out(question: dict[str, Any]) -> bool:
    return zlib.crc32(question["id"].encode()) % 2 == 1


def mark(client: httpx.Client, q: dict[str, Any], documents: dict[str, str]) -> str:
    """Ask `q` and mark the answer by its label; returns the mark given."""
    r = client.post("/ask", json={"question": q["question"]})
    r.raise_for_status()
    answer = r.json()
    body: dict[str, Any] = {"answer_id": answer["answer_id"], "rating": "up"}
    if not q["answerable"]:
        if not answer["abstained"]:
            body |= {"rating": "down", "kind": "should_abstain"}
    else:
        quotes = [" ".join(c["quote"].split()) for c in answer["citations"]]
        gold = [" ".join(e.split()) for e in q["evidence"]]
        right = not answer["abstained"] and any(g in x or x in g for g in gold for x in quotes)
        if not right:
            kind = "should_answer" if answer["abstained"] else "wrong_answer"
            body |= {"rating": "down", "kind": kind, "correction": q["answers"][0]}
            evidence = _evidence(client, q, documents)
            if evidence is not None:
                body["evidence"] = evidence
    r = client.post("/feedback", json=body)
    r.raise_for_status()
    return body.get("kind") or ("helpful" if body["rating"] == "up" else "not helpful")


def _evidence(
    client: httpx.Client, q: dict[str, Any], documents: dict[str, str]
) -> dict[str, Any] | None:
    """The first gold sentence as a span of the gold document (where it is found verbatim)."""
    doc_id = q["gold_ids"][0]
    if doc_id not in documents:
        documents[doc_id] = client.get(f"/documents/{doc_id}").json()["text"]
    text = documents[doc_id]
    for sentence in q["evidence"]:
        at = text.find(sentence)
        if at >= 0:
            return {"doc_id": doc_id, "start": at, "end": at + len(sentence)}
    return None


def metrics(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    out = {}
    for _, dotted in METRICS:
        value: Any = report
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[dotted] = None if value is None else round(float(value), 4)
    out["n"] = report["n"]
    return out


def _few_marks(exported: Path, n_fit: int, n: int, budget: float, work: Path) -> dict[str, Any]:
    """A person who marked only the first `n` answers: the exported file cut to those plus the
    held-out half, so `qa calibrate` fits on the `n` and reports on the same held-out half."""
    lines = exported.read_text().splitlines()
    cut = work / f"first-{n}.jsonl"
    cut.write_text("".join(x + "\n" for x in lines[:n] + lines[n_fit:]))
    out = work / f"calibrate-first-{n}.json"
    holdout = (len(lines) - n_fit) / (len(lines) - n_fit + n)
    code = subprocess.run(
        [*QA, "calibrate", cut, "--holdout", f"{holdout:.6f}", "--dry-run", "--json", out,
         "--max-false-abstention", str(budget), "--index", work / "index",
         "--corpus", work / "corpus"],
        env=clean_env(), text=True, capture_output=True, check=False,
    )  # fmt: skip
    if code.returncode != 0:  # e.g. the first n hold no unanswerable question
        return {"marks": n, "error": code.stderr.strip()}
    record = json.loads(out.read_text())
    return {"marks": n, "fit_unanswerable": record["n_unanswerable"], **record["held_out"]}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-false-abstention", type=float, default=0.1)
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.05, 0.1, 0.15, 0.2])
    parser.add_argument("--few", type=int, default=20, help="the marks of one person")
    args = parser.parse_args()
    run = Run("feedback")
    work = WORK / "feedback"
    shutil.rmtree(work, ignore_errors=True)
    (work / "corpus").mkdir(parents=True)
    (work / "corpus" / "corpus.jsonl").symlink_to(CLAPNQ / "corpus.jsonl")
    index = work / "index"
    where = ["--index", index, "--corpus", work / "corpus"]
    qa("index", *where)

    records = [json.loads(x) for x in (CLAPNQ / "questions.jsonl").read_text().splitlines()]
    # Asked in an order unrelated to the labels (the file lists the answerable ones first).
    records.sort(key=lambda q: zlib.crc32(q["id"].encode()))
    fit = [q for q in records if not held_out(q)]
    held = [q for q in records if held_out(q)]
    held_file = work / "held_out.jsonl"
    held_file.write_text("".join(json.dumps(q) + "\n" for q in held))

    marks: dict[str, dict[str, int]] = {"fit": {}, "held_out": {}}
    _, proc, url = time_to_ready(index, work / "serve.log", corpus=work / "corpus")
    try:
        documents: dict[str, str] = {}
        with httpx.Client(base_url=url, timeout=120) as client:
            for part, questions in (("fit", fit), ("held_out", held)):
                for q in questions:
                    given = mark(client, q, documents)
                    marks[part][given] = marks[part].get(given, 0) + 1
    finally:
        stop(proc)

    stats = json.loads(qa("feedback", "stats", *where, "--json", capture=True))
    exported = work / "feedback.jsonl"
    qa("feedback", "export", exported, *where)
    n_exported = len(exported.read_text().splitlines())
    assert n_exported == len(records), "every mark of this bench makes a question"

    qa("eval", held_file, *where, "--json", work / "before.json")
    holdout = len(held) / (len(fit) + len(held))
    sweep = []
    for budget in args.sweep:
        out = work / f"calibrate-{budget}.json"
        qa(
            "calibrate", "--feedback", "--holdout", f"{holdout:.6f}", "--dry-run", "--json", out,
            "--max-false-abstention", budget, *where,
        )  # fmt: skip
        effect = json.loads(out.read_text())["held_out"]
        sweep.append({"max_false_abstention": budget, **effect})
    few = _few_marks(exported, len(fit), args.few, args.max_false_abstention, work)
    qa(
        "calibrate", "--feedback", "--holdout", f"{holdout:.6f}",
        "--max-false-abstention", args.max_false_abstention, *where,
    )  # fmt: skip
    calibration = json.loads((index / "calibration.json").read_text())
    qa("eval", held_file, *where, "--json", work / "after.json")
    qa("eval", "--feedback", *where, "--report", work / "report.html", "--json", work / "fb.json")
    before, after = metrics(work / "before.json"), metrics(work / "after.json")
    effect = calibration["held_out"]
    results = {
        "set": "clapnq-dev-a: fit = even crc32(id), held out = odd crc32(id)",
        "questions": {"fit": len(fit), "held_out": len(held)},
        "marks": marks,
        "stats": stats,
        "exported": n_exported,
        "calibration": {
            "threshold_before": effect["before"]["threshold"],
            "threshold_after": calibration["abstain_threshold"],
            "fitted_on": calibration["n_questions"],
            "max_false_abstention": args.max_false_abstention,
            "held_out": effect,
        },
        "sweep": sweep,
        "few_marks": few,
        "eval_held_out": {"before": before, "after": after},
        "report": str((work / "report.html").relative_to(ROOT)),
    }
    rows = [
        [name, before[dotted], after[dotted]]
        for name, dotted in METRICS
        if before[dotted] is not None or after[dotted] is not None
    ]
    thresholds = [effect["before"]["threshold"], effect["after"]["threshold"]]
    rows.insert(0, ["abstain threshold", *thresholds])
    tables = [
        table(
            f"Feedback-driven calibration, CLAPnq dev A: fitted on {calibration['n_questions']} "
            f"marked answers, measured on the other {len(held)} questions (qa eval)",
            ["metric", "before", "after"],
            rows,
            note="Marks made through POST /feedback by the public labels, as a stand-in for "
            "people; the held-out half is never fitted on.",
        )
    ]
    tables.append(
        table(
            "The held-out effect per false-abstention budget (qa calibrate --feedback; fitted on "
            "the first half by time, reported on the second)",
            ["budget", "threshold", "recall before", "recall after", "false abst. before",
             "false abst. after", "F1 before", "F1 after"],
            [
                [s["max_false_abstention"], s["after"]["threshold"],
                 *(_r(s[w][m]) for m in ("recall", "false_abstention", "f1")
                   for w in ("before", "after"))]
                for s in sweep
            ],
        )
    )  # fmt: skip
    if "error" not in few:
        tables[-1]["rows"].append(
            [f"{args.max_false_abstention} ({few['marks']} marks)", few["after"]["threshold"],
             *(_r(few[w][m]) for m in ("recall", "false_abstention", "f1")
               for w in ("before", "after"))]
        )  # fmt: skip
    run.write(results, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
