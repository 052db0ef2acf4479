"""The HTTP wire format: Pydantic models converted from `qa.types`, so OpenAPI documents it.

Only the HTTP edge uses Pydantic; inside the package everything is a frozen dataclass. Response
models mirror `Passage.to_dict()` and `Answer.to_dict()` field for field (the same JSON as
`qa search --json` and `qa ask --json`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from qa.types import AnswerKind, Turn

_DOC = "china-blockchain-policy-2017-2019.txt"
_TITLE = "china-blockchain-policy-2017-2019"
_QUOTE = (
    "The National Network Information Office issued the Regulations on the Management of "
    "Blockchain Information Services on January 10, 2019."
)
_PASSAGE_EXAMPLE: dict[str, Any] = {
    "n": 1,
    "chunk_id": "3f9c2a7e1b04d6a8",
    "doc_id": _DOC,
    "title": _TITLE,
    "text": "Supervision: ... " + _QUOTE + " ...",
    "score": 0.731204,
    "start": 4510,
    "end": 5391,
    "page": None,
}
_ANSWER_EXAMPLE: dict[str, Any] = {
    "answer_id": "5d1c0e2f9a7b4c3e8f6a1b2c3d4e5f60",
    "question": "When were the blockchain information service regulations issued?",
    "standalone_question": "When were the blockchain information service regulations issued?",
    "answer": _QUOTE + " [1]",
    "short_answer": "January 10, 2019",
    "abstained": False,
    "abstain_reason": None,
    "kind": "answered",
    "confidence": 0.87,
    "citations": [
        {
            "n": 1,
            "chunk_id": "3f9c2a7e1b04d6a8",
            "doc_id": _DOC,
            "title": _TITLE,
            "quote": _QUOTE,
            "start": 4680,
            "end": 4816,
            "page": None,
            "supported": True,
        }
    ],
    "passages": [_PASSAGE_EXAMPLE],
    "answerer": "extractive",
    "timings_ms": {"retrieve": 9.8, "answer": 6.1, "total": 16.3},
}


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 5.0 is the integer 5 there, but "5" and true are not numbers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Constraints before the validator, so they stay JSON-schema minimum/maximum.
TopK = Annotated[int, Field(ge=1, le=100), BeforeValidator(_whole_number)]
ContextTokens = Annotated[int, Field(ge=64, le=131072), BeforeValidator(_whole_number)]


class ErrorOut(BaseModel):
    """Every error response: one readable message."""

    detail: str = Field(examples=["The question is empty. Type a question to ask."])


class TurnIn(BaseModel):
    """An earlier message of the conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "assistant"]
    content: str

    def to_turn(self) -> Turn:
        return Turn(role=self.role, content=self.content)


class AskIn(BaseModel):
    """A question, with the conversation so far for follow-ups."""

    # Strict: "5" is not a top_k and 0 is not a bool; wrong types are refused, not guessed.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"question": "When were the blockchain information service regulations issued?"},
                {
                    "question": "How many projects were in the first batch?",
                    "history": [
                        {"role": "user", "content": "What must blockchain services file?"},
                        {"role": "assistant", "content": "They must fill in the filing [1]."},
                    ],
                    "top_k": 5,
                    "answerer": "extractive",
                },
            ]
        },
    )

    question: str = Field(
        description="The question; must not be blank. Its length limit is the server setting "
        "max_question_chars (default 2000).",
        json_schema_extra={"pattern": r"\S"},
    )
    history: list[TurnIn] = Field(
        default_factory=list, description="Earlier turns, oldest first (for follow-ups)."
    )
    top_k: TopK | None = Field(None, description="Passages to retrieve.")
    answerer: str | None = Field(None, description="Answerer name (see GET /answerers).")
    context_tokens: ContextTokens | None = Field(
        None,
        description="Token budget of the passages given to answerers that pack context "
        "(openai-chat); default: the server setting context_tokens.",
    )
    explain: bool = Field(
        False, description="Add `explain`: every retrieval candidate with its scores."
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("The question is empty. Type a question to ask.")
        return value

    def turns(self) -> tuple[Turn, ...]:
        return tuple(t.to_turn() for t in self.history)

    def ask_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `Pipeline.ask` / `ask_stream` this request asks for."""
        return {
            "history": self.turns(),
            "top_k": self.top_k,
            "answerer": self.answerer,
            "context_tokens": self.context_tokens,
            "explain": self.explain,
        }


class CandidateOut(BaseModel):
    """One retrieval candidate and how each stage scored it (`explain`)."""

    chunk_id: str
    doc_id: str
    rank: int | None = Field(description="Its passage rank n, or null when left out.")
    status: str = Field(description='"kept", "dropped: duplicate of <chunk_id>", or why not.')
    dense_rank: int | None
    dense_score: float = Field(description="Cosine similarity with the question.")
    bm25_rank: int | None
    bm25_score: float | None
    fused_score: float
    rerank_score: float | None


class PassageOut(BaseModel):
    """A retrieved chunk: `n` is its 1-based rank, the number an `[n]` citation refers to."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PASSAGE_EXAMPLE]})

    n: int
    chunk_id: str
    doc_id: str
    title: str
    text: str
    score: float
    start: int = Field(description="Char offset of the chunk in its document.")
    end: int
    page: int | None


class CitationOut(BaseModel):
    """The quoted span behind a claim: `document.text[start:end] == quote`."""

    n: int = Field(description="The passage rank cited as [n].")
    chunk_id: str
    doc_id: str
    title: str
    quote: str
    start: int
    end: int
    page: int | None
    supported: bool = Field(description="Whether the quote was verified to support the claim.")


class AnswerResult(BaseModel):
    """The Answer JSON, exactly as `qa ask --json` prints it (the `ask` tool of `qa mcp`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ANSWER_EXAMPLE]})

    answer_id: str | None = Field(
        description="The id to rate this answer by (POST /feedback); set on every answer a "
        "server or `qa mcp` serves, null from `qa ask`."
    )
    question: str
    standalone_question: str = Field(description="What retrieval used (differs on follow-ups).")
    answer: str = Field(description="Readable text with [n] citation markers.")
    short_answer: str | None
    abstained: bool
    abstain_reason: str | None
    kind: AnswerKind = Field(
        description='"answered"; "closest": the closest passage found, which may not answer the '
        'question (`answer` says so; `abstained` is false); "abstained" whenever `abstained` is '
        "true."
    )
    confidence: float | None = Field(
        ge=0, le=1, description="How sure the answerer is that the answer is right (0-1), or null."
    )
    citations: list[CitationOut]
    passages: list[PassageOut]
    answerer: str
    timings_ms: dict[str, float]


class AnswerOut(AnswerResult):
    """The Answer JSON, exactly as `qa ask --json` prints it."""

    explain: list[CandidateOut] | None = Field(
        None, description="Only when asked: every retrieval candidate with its scores."
    )


class SearchResult(BaseModel):
    """The passages for a question, exactly as `qa search --json` prints them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"question": _ANSWER_EXAMPLE["question"], "passages": [_PASSAGE_EXAMPLE]}]
        }
    )

    question: str
    passages: list[PassageOut]


class SearchOut(SearchResult):
    """The passages for a question, exactly as `qa search --json` prints them."""

    explain: list[CandidateOut] | None = Field(
        None, description="Only when asked: every retrieval candidate with its scores."
    )


class HighlightOut(BaseModel):
    """The requested span of a document."""

    start: int
    end: int
    text: str


class DocumentOut(BaseModel):
    """A source document, for click-through from a citation."""

    id: str
    title: str
    text: str
    source: str
    pages: list[int] = Field(description="Char offset where each page starts (PDFs only).")
    highlight: HighlightOut | None = Field(
        None, description="The span given by ?start=&end=, when asked for."
    )


class AnswererOut(BaseModel):
    name: str
    description: str
    default: bool


class AnswerersOut(BaseModel):
    answerers: list[AnswererOut]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready"] = "ready"
    documents: int
    chunks: int
    model: str = Field(description="The embedding model.")
    embedding_backend: str = Field(
        description="What runs the embedding model: torch, onnx, onnx-int8 or openvino."
    )
    embedding_dtype: str = Field(description="The embedding model's precision.")
    embedding_backend_reason: str = Field(
        description="Why that backend: `auto`'s choice and its reason, or the setting."
    )
    answerer: str = Field(description="The default answerer.")
    verifier: str | None = Field(
        None,
        description="The version of the default answerer's trained answer verifier (its weights "
        "and fitted combination), or null when it has none.",
    )
    warming_sentences: bool = Field(
        False,
        description="The answerer's sentence vectors are being made ahead of questions: read "
        "back from beside the index, the rest embedded while no request runs (setting "
        "warm_sentences).",
    )
    warmed_sentences: int = Field(
        0,
        description="Sentence vectors that warm-up read back or embedded for the index served "
        "now, once it is done.",
    )


def _event(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            },
        },
    }


# Each server-sent event of POST /ask/stream (OpenAPI `itemSchema`); `data` holds JSON.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        _event("passages", {"type": "array", "items": {"$ref": "#/components/schemas/PassageOut"}}),
        _event(
            "delta",
            {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        ),
        _event("answer", {"$ref": "#/components/schemas/AnswerOut"}),
        _event(
            "error",
            {
                "type": "object",
                "required": ["detail", "status"],
                "properties": {"detail": {"type": "string"}, "status": {"type": "integer"}},
            },
        ),
    ]
}


# -- documents added and removed while the server runs (POST/DELETE /documents, /jobs) -------

_JOB_EXAMPLE: dict[str, Any] = {
    "job_id": "3-5f0c9e2a7b1d",
    "state": "running",
    "progress": {"done": 64, "total": 118, "unit": "chunks"},
    "files": [
        {"name": "paper.pdf", "doc_id": "paper.pdf", "status": "running", "error": None},
    ],
}


class JobAccepted(BaseModel):
    """A job was queued; follow it at GET /jobs/{job_id}."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"job_id": "3-5f0c9e2a7b1d"}]})

    job_id: str


class ProgressOut(BaseModel):
    """`done` of `total` `unit`s: files while queued, then scanned pages read by OCR (if any),
    then chunks embedded."""

    done: int
    total: int
    unit: Literal["files", "pages", "chunks"]


class JobFileOut(BaseModel):
    """One file of a job; `error` says in plain words why it failed (null when it did not)."""

    name: str
    doc_id: str
    status: Literal["queued", "running", "done", "failed"]
    error: str | None


class JobOut(BaseModel):
    """An ingest job: queued, running (one at a time, FIFO), done or failed."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})

    job_id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: ProgressOut
    files: list[JobFileOut]


class DocumentInfoOut(BaseModel):
    """An indexed document: `bytes` and `added` (its file's modification time, UTC) come from
    the corpus folder (null when the file is gone), `pages` is null for unpaged formats."""

    doc_id: str
    title: str
    type: str = Field(examples=["pdf"])
    pages: int | None
    chunks: int
    bytes: int | None
    added: str | None = Field(examples=["2026-11-30T04:12:09Z"])


class DocumentsOut(BaseModel):
    """Every indexed document, sorted by id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "documents": [
                        {
                            "doc_id": _DOC,
                            "title": _TITLE,
                            "type": "txt",
                            "pages": None,
                            "chunks": 14,
                            "bytes": 11702,
                            "added": "2026-11-30T04:12:09Z",
                        }
                    ]
                }
            ]
        }
    )

    documents: list[DocumentInfoOut]
