"""Frozen data types that flow between the stages of the pipeline.

corpus -> Document -> Chunk -> (vectors, store) ; question -> Passage[] -> Answerer -> Answer.
Every type here is immutable; collections are tuples so that "frozen" really means frozen.
`to_dict()` gives the documented JSON shape (the same for the CLI's --json and the HTTP API).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from qa.errors import InvalidSpanError


@dataclass(frozen=True)
class Document:
    """One source document as loaded from the corpus folder.

    `pages` holds the char offset where each page starts (PDFs only), so a char offset
    maps back to a 1-based page number with `page_at`.
    """

    id: str
    title: str
    text: str
    source: str
    content_hash: str
    pages: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """1-based page holding char `offset`, or None when the document has no pages."""
        if not self.pages:
            return None
        page = 1
        for i, start in enumerate(self.pages):
            if start <= offset:
                page = i + 1
            else:
                break
        return page

    def span(self, start: int | None, end: int | None) -> dict[str, Any] | None:
        """`{"start", "end", "text"}` of a span to highlight, None when neither end is given.

        InvalidSpanError when only one end is given or the span is not inside the text.
        """
        if start is None and end is None:
            return None
        if start is None or end is None:
            raise InvalidSpanError("Give both start and end to highlight a span, or neither.")
        if not 0 <= start < end <= len(self.text):
            raise InvalidSpanError(
                f"Span start={start}, end={end} is out of range for document {self.id!r} "
                f"({len(self.text)} chars): need 0 <= start < end <= {len(self.text)}."
            )
        return {"start": start, "end": end, "text": self.text[start:end]}

    def to_dict(self, start: int | None = None, end: int | None = None) -> dict[str, Any]:
        """The document JSON of `GET /documents/{id}`, with the span `start:end` highlighted."""
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "source": self.source,
            "pages": list(self.pages),
            "highlight": self.span(start, end),
        }


@dataclass(frozen=True)
class DocumentInfo:
    """An indexed document without its text: what a list of documents shows."""

    id: str
    title: str
    source: str
    n_pages: int
    n_chunks: int


@dataclass(frozen=True)
class Chunk:
    """A token-bounded span of a document: `document.text[start:end] == text`."""

    id: str
    doc_id: str
    title: str
    text: str
    start: int
    end: int
    n_tokens: int
    page: int | None = None


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its score and 1-based rank (the n of an `[n]` citation)."""

    chunk: Chunk
    score: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "n": self.rank,
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "title": c.title,
            "text": c.text,
            "score": round(float(self.score), 6),
            "start": c.start,
            "end": c.end,
            "page": c.page,
        }


@dataclass(frozen=True)
class Candidate:
    """One candidate passage and how each stage scored it (the `--explain` row)."""

    chunk: Chunk
    dense_rank: int | None
    dense_score: float
    bm25_rank: int | None
    bm25_score: float | None
    fused_score: float
    rerank_score: float | None
    rank: int | None
    status: str

    def to_dict(self) -> dict[str, Any]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(float(x), 6)

        return {
            "chunk_id": self.chunk.id,
            "doc_id": self.chunk.doc_id,
            "rank": self.rank,
            "status": self.status,
            "dense_rank": self.dense_rank,
            "dense_score": rounded(self.dense_score),
            "bm25_rank": self.bm25_rank,
            "bm25_score": rounded(self.bm25_score),
            "fused_score": rounded(self.fused_score),
            "rerank_score": rounded(self.rerank_score),
        }


@dataclass(frozen=True)
class Citation:
    """A quoted span of a source document backing a claim; offsets are in the document."""

    n: int
    chunk_id: str
    doc_id: str
    title: str
    quote: str
    start: int
    end: int
    page: int | None
    supported: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "quote": self.quote,
            "start": self.start,
            "end": self.end,
            "page": self.page,
            "supported": self.supported,
        }


@dataclass(frozen=True)
class Turn:
    """One earlier message of a conversation."""

    role: Literal["user", "assistant"]
    content: str


AnswerKind = Literal["answered", "closest", "abstained"]


@dataclass(frozen=True)
class Answer:
    """What an answerer returns; the pipeline fills in timings and the standalone question."""

    question: str
    answer: str
    answerer: str
    standalone_question: str = ""
    short_answer: str | None = None
    abstained: bool = False
    abstain_reason: str | None = None
    citations: tuple[Citation, ...] = ()
    passages: tuple[Passage, ...] = ()
    timings_ms: tuple[tuple[str, float], ...] = field(default=())
    # Every retrieval candidate with its scores, only when the caller asked to explain.
    candidates: tuple[Candidate, ...] = ()
    # "answered"; "closest": the best passage found, which may not answer the question (shown
    # as such, `abstained` stays false); "abstained". An abstention is always "abstained".
    kind: AnswerKind = "answered"
    # How sure the answerer is that the answer is right (0-1), when it can say.
    confidence: float | None = None
    # Set by the server when it records the answer it serves (the id `POST /feedback` names);
    # None for an answer nobody recorded (`qa ask`, `qa eval`).
    answer_id: str | None = None

    def __post_init__(self) -> None:
        if self.abstained and self.kind != "abstained":
            object.__setattr__(self, "kind", "abstained")
        elif self.kind == "abstained" and not self.abstained:
            raise ValueError("kind 'abstained' needs abstained=True")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "answer_id": self.answer_id,
            "question": self.question,
            "standalone_question": self.standalone_question or self.question,
            "answer": self.answer,
            "short_answer": self.short_answer,
            "abstained": self.abstained,
            "abstain_reason": self.abstain_reason,
            "kind": self.kind,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "answerer": self.answerer,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms},
        }
        if self.candidates:
            out["explain"] = [c.to_dict() for c in self.candidates]
        return out


FeedbackKind = Literal["wrong_answer", "should_abstain", "should_answer", "wrong_source"]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = (
    "wrong_answer",
    "should_abstain",
    "should_answer",
    "wrong_source",
)
Rating = Literal["up", "down"]


@dataclass(frozen=True)
class ServedAnswer:
    """An answer as a server gave it, kept so feedback on it stays meaningful after the index
    changes: the question, what retrieval used, the Answer JSON, the index version, the time."""

    answer_id: str
    question: str
    standalone_question: str
    answer_json: str
    index_version: str
    served_at: str  # ISO 8601, UTC

    def answer(self) -> dict[str, Any]:
        """The Answer JSON as served."""
        data: dict[str, Any] = json.loads(self.answer_json)
        return data


@dataclass(frozen=True)
class Evidence:
    """The span of a document a reader pointed at as the answer's evidence (its text kept)."""

    doc_id: str
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "start": self.start, "end": self.end, "text": self.text}


@dataclass(frozen=True)
class Feedback:
    """A reader's judgement of one served answer (the latest one: a new one replaces it)."""

    feedback_id: str
    rating: Rating
    kind: FeedbackKind | None
    correction: str | None
    evidence: Evidence | None
    created_at: str  # ISO 8601, UTC
    served: ServedAnswer

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `GET /feedback` (the served answer's question, index version and time
        inline; its Answer JSON under `answer`)."""
        s = self.served
        return {
            "feedback_id": self.feedback_id,
            "answer_id": s.answer_id,
            "rating": self.rating,
            "kind": self.kind,
            "correction": self.correction,
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
            "created_at": self.created_at,
            "question": s.question,
            "standalone_question": s.standalone_question,
            "index_version": s.index_version,
            "served_at": s.served_at,
            "answer": s.answer(),
        }


# A title longer than this is shortened in the embedding text (it should never crowd out text).
MAX_TITLE_CHARS = 200


def embedding_text(chunk: Chunk) -> str:
    """What the embedder reads for `chunk`: its title on a line, then its text."""
    return embedding_text_of(chunk.title, chunk.text)


def embedding_text_of(title: str, text: str) -> str:
    """What the embedder reads for a chunk of `text` under `title` (before the Chunk exists)."""
    title = title.strip()
    if not title or text.startswith(title):
        return text
    return f"{short_title(title)}\n{text}"


def short_title(title: str) -> str:
    """`title`, cut at a word boundary to at most MAX_TITLE_CHARS."""
    title = title.strip()
    if len(title) > MAX_TITLE_CHARS:
        title = title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0]
    return title
