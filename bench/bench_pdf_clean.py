"""Page hit@5 on a typeset PDF before and after the PDF text clean-up (issue 14, item 4).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_pdf_clean.py [--retrieval dense] [--out DIR]

bench/paper_pdf.py typesets PEP 703 (public domain / CC0) as a 24-page PDF with hyphenated
line ends, alternating running headers and page numbers. The 30 questions of
bench/data/pep-0703_questions.jsonl each name an evidence phrase; its gold pages are the pages
the typesetter put its words on (known from the layout, not from any reader). The PDF is
indexed twice with the default settings, in the same process: "before" reads it as qa did
before the clean-up (pypdf's page texts joined by blank lines), "after" as `qa index` does now
(qa.ingest.clean). For each question the top 5 passages of `Pipeline.search` are taken:
page hit@5 = the gold page is among the pages the 5 passages span; start-page hit@5 counts
only each passage's `page` (where it starts, what citations show); hit@1 the first passage.
Text quality, from the same run: `word_errors` = words of the document text that differ from
the typeset source (multiset difference both ways, so a broken word or a running header counts),
`evidence_verbatim` = share of evidence phrases found as they are in the document text
(whitespace collapsed): what a citation needs to quote the sentence whole.
Writes bench/out/pdf_clean.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from paper_pdf import paper  # noqa: E402

from qa.config import load_settings  # noqa: E402
from qa.ingest.clean import CleanText  # noqa: E402
from qa.pipeline import Pipeline  # noqa: E402

QUESTIONS = ROOT / "bench" / "data" / "pep-0703_questions.jsonl"


def raw_pages(pages: Sequence[str]) -> CleanText:
    """The text as qa read PDFs before the clean-up: the pages joined by blank lines."""
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2
    return CleanText("\n\n".join(pages), tuple(starts))


def text_quality(text: str, source: str, evidence: list[str]) -> dict[str, float]:
    """How far the document text is from the typeset source (see the module docstring)."""
    words, truth = Counter(text.split()), Counter(source.split())
    flat = " ".join(text.split())
    return {
        "word_errors": sum(((words - truth) + (truth - words)).values()),
        "evidence_verbatim": sum(" ".join(e.split()) in flat for e in evidence) / len(evidence),
    }


def measure(pipeline: Pipeline, questions: list[dict[str, object]]) -> dict[str, float]:
    spanned = start_page = first = 0
    for q in questions:
        gold = set(q["gold_pages"])  # type: ignore[call-overload]
        passages = pipeline.search(str(q["question"]), k=5)
        seen: list[set[int]] = []
        for p in passages:
            doc = pipeline.document(p.chunk.doc_id)
            lo, hi = doc.page_at(p.chunk.start) or 0, doc.page_at(p.chunk.end - 1) or 0
            seen.append(set(range(lo, hi + 1)))
        spanned += bool(gold & set().union(*seen))
        start_page += bool(gold & {p.chunk.page for p in passages})
        first += bool(seen and gold & seen[0])
    n = len(questions)
    return {
        "page_hit@5": spanned / n,
        "start_page_hit@5": start_page / n,
        "page_hit@1": first / n,
        "chunks": pipeline.store.n_chunks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--retrieval", choices=["hybrid", "dense", "bm25"], default="hybrid")
    args = parser.parse_args()
    made = paper()
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line]
    for q in questions:
        q["gold_pages"] = sorted(made.pages_of(q["evidence"]))
    results: dict[str, object] = {
        "pages": len(made.pages),
        "questions": len(questions),
        "retrieval": args.retrieval,
    }
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        (corpus / "pep-0703.pdf").write_bytes(made.pdf())
        for variant in ("before", "after"):
            settings = load_settings(
                corpus_dir=corpus, index_dir=Path(tmp) / variant, retrieval=args.retrieval
            )
            patch = (
                mock.patch("qa.ingest.readers.clean_pages", raw_pages)
                if variant == "before"
                else None
            )
            if patch:
                patch.start()
            try:
                pipeline = Pipeline.load(settings, build_if_missing=True)
            finally:
                if patch:
                    patch.stop()
            (doc,) = pipeline.store.documents()
            evidence = [str(q["evidence"]) for q in questions]
            source = f"{made.title}\n{made.flat}"
            results[variant] = {
                **measure(pipeline, questions),
                **text_quality(doc.text, source, evidence),
            }
            print(variant, results[variant], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "pdf_clean.json" if args.retrieval == "hybrid" else f"pdf_clean_{args.retrieval}.json"
    (args.out / name).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
