"""Training pairs for the answer verifier: (question, sentence, does it answer, where).

Two sources, both turned into the same `Pair`s:
- SQuAD 2.0 JSON (`load_squad`): the sentence holding the answer is a positive with its
  answer span; other sentences of the paragraph are negatives, the most question-like first;
  an unanswerable question's sentence holding its `plausible_answers` span is the hardest
  negative there is (written to look answerable).
- A `qa eval` dataset folder (`load_question_set`: `corpus.jsonl` + `questions.jsonl`), so a
  user can fine-tune on their own labelled questions: sentences holding an `evidence` string
  (or an answer string) of an answerable question are positives; the most question-like
  other sentences of its gold documents, or of the best BM25 documents for an unanswerable
  question, are negatives.

Sentences are split with the answerer's own splitter, so training sees what serving sees.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.answering.citations import Span, content_terms, split_sentences

NEGATIVES = 3  # per question: enough hard ones without drowning the positives
MIN_SENTENCE_CHARS = 12


@dataclass(frozen=True)
class Pair:
    """One training example. `span` is the short answer's char offsets inside `sentence`."""

    question: str
    sentence: str
    label: int
    span: tuple[int, int] | None
    group: str  # the question's id: pairs of one question stay on one side of a split
    source: str


def fold_of(question_id: str, folds: int) -> int:
    """A stable fold for a question id (crc32, as the calibration script splits CLAPnq)."""
    return zlib.crc32(question_id.encode()) % folds


def load_squad(
    path: Path, *, exclude_titles: Iterable[str] = (), only_titles: Iterable[str] = ()
) -> list[Pair]:
    """Pairs from a SQuAD 2.0 JSON file, leaving out (or keeping only) the named articles."""
    exclude, only = set(exclude_titles), set(only_titles)
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    pairs: list[Pair] = []
    for article in data:
        title = article["title"]
        if title in exclude or (only and title not in only):
            continue
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            sentences = [s for s in split_sentences(context) if len(s.text) >= MIN_SENTENCE_CHARS]
            for qa in paragraph["qas"]:
                pairs.extend(_squad_pairs(qa, sentences, source=f"squad:{title}"))
    return pairs


def _squad_pairs(qa: dict, sentences: Sequence[Span], *, source: str) -> Iterator[Pair]:
    question, qid = qa["question"].strip(), qa["id"]
    impossible = bool(qa.get("is_impossible"))
    answers = qa.get("plausible_answers" if impossible else "answers") or []
    holding: Span | None = None
    span: tuple[int, int] | None = None
    if answers:
        a = answers[0]
        start, end = a["answer_start"], a["answer_start"] + len(a["text"])
        for s in sentences:
            if s.start <= start and end <= s.end:
                holding, span = s, (start - s.start, end - s.start)
                break
    if holding is not None:
        yield Pair(
            question,
            holding.text,
            0 if impossible else 1,
            None if impossible else span,
            qid,
            source,
        )
    texts = {a["text"].strip().lower() for a in answers if a["text"].strip()}
    others = [
        s
        for s in sentences
        if s is not holding and not (not impossible and any(t in s.text.lower() for t in texts))
    ]
    for s in _most_alike(question, others, NEGATIVES - (1 if impossible and holding else 0)):
        yield Pair(question, s.text, 0, None, qid, source)


def load_question_set(
    folder: Path, *, keep: Iterable[int] | None = None, folds: int = 1
) -> list[Pair]:
    """Pairs from a `qa eval` dataset folder; with `keep`, only questions whose
    `fold_of(id, folds)` is in it (the rest stay held out)."""
    corpus = {d["id"]: d["text"] for d in _jsonl(folder / "corpus.jsonl")}
    questions = list(_jsonl(folder / "questions.jsonl"))
    keep_set = set(keep) if keep is not None else None
    search = _Bm25(corpus) if any(not q.get("gold_ids") for q in questions) else None
    pairs: list[Pair] = []
    for q in questions:
        qid = str(q["id"])
        if keep_set is not None and fold_of(qid, folds) not in keep_set:
            continue
        question = str(q["question"]).strip()
        answerable = bool(q.get("answerable", bool(q.get("answers"))))
        doc_ids = [d for d in q.get("gold_ids") or [] if d in corpus]
        if not doc_ids and search is not None:
            doc_ids = search.top(question, 2)
        sentences = [
            s
            for d in doc_ids
            for s in split_sentences(corpus[d])
            if len(s.text) >= MIN_SENTENCE_CHARS
        ]
        evidence = [
            _norm(e if isinstance(e, str) else e.get("text", "")) for e in q.get("evidence") or []
        ]
        evidence = [e for e in evidence if e]
        answers = [str(a) for a in q.get("answers") or [] if str(a).strip()]
        positives: list[Span] = []
        if answerable:
            for s in sentences:
                norm = _norm(s.text)
                by_evidence = any(norm in e or e in norm for e in evidence if len(norm) > 20)
                by_answer = any(a.lower() in s.text.lower() for a in answers)
                if by_evidence if evidence else by_answer:
                    positives.append(s)
        for s in positives:
            yield_span = _short_span(s.text, answers)
            pairs.append(Pair(question, s.text, 1, yield_span, qid, f"set:{folder.name}"))
        rest = [s for s in sentences if s not in positives]
        if answerable and not positives:
            continue  # no sentence could be matched to the evidence: its negatives would lie
        for s in _most_alike(question, rest, NEGATIVES):
            pairs.append(Pair(question, s.text, 0, None, qid, f"set:{folder.name}"))
    return pairs


def _short_span(sentence: str, answers: Sequence[str]) -> tuple[int, int] | None:
    """A short answer's offsets in the sentence (short answers only: long ones are quotes)."""
    for a in sorted(answers, key=len):
        if len(a.split()) > 8:
            continue
        i = sentence.lower().find(a.lower())
        if i >= 0:
            return (i, i + len(a))
    return None


def _most_alike(question: str, sentences: Sequence[Span], n: int) -> list[Span]:
    """The `n` sentences sharing the most content words with the question (ties: in order)."""
    if n <= 0:
        return []
    q = set(content_terms(question))
    ranked = sorted(
        enumerate(sentences), key=lambda it: (-len(q & set(content_terms(it[1].text))), it[0])
    )
    return [s for _, s in ranked[:n]]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


class _Bm25:
    """The best documents for an unanswerable question (the passages a reader would be shown)."""

    def __init__(self, corpus: dict[str, str]) -> None:
        import bm25s

        self.ids = list(corpus)
        self.retriever = bm25s.BM25()
        self.retriever.index(
            bm25s.tokenize(list(corpus.values()), stopwords="en", show_progress=False),
            show_progress=False,
        )

    def top(self, question: str, k: int) -> list[str]:
        import bm25s

        k = min(k, len(self.ids))
        docs, _ = self.retriever.retrieve(
            bm25s.tokenize([question], stopwords="en", show_progress=False),
            k=k,
            show_progress=False,
        )
        return [self.ids[int(i)] for i in docs[0]]
