"""Feedback on served answers: `POST /feedback`, `GET /feedback`, `DELETE /feedback/{id}`.

Every answer the server gives carries an `answer_id` (recorded by `AppState.record`); a reader
rates it up or down, may say what was wrong (`kind`), correct it, and point at the evidence (a
span of a document). Posting again for the same answer replaces the earlier record. Writes follow
the upload rule (anyone on a loopback host, else only with the API key: `write_guard`); reads
keep the API's rule. The records live beside the index (`qa.stores.feedback`), where
`qa feedback export`, `qa eval --feedback` and `qa calibrate --feedback` read them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from qa.config import Settings
from qa.errors import DocumentNotFoundError, InvalidSpanError
from qa.server.documents import write_guard
from qa.server.models import AnswerResult, ErrorOut
from qa.server.state import Ready, State
from qa.types import Evidence, FeedbackKind

_RESPONSES: dict[int, str] = {
    401: "Missing or wrong API key (only when the server has one)",
    403: "Writes are off here (the upload rule: loopback, or an API key)",
    404: "No served answer with that answer_id, or no feedback with that feedback_id",
    422: "Invalid body: wrong types or values, an unknown field, or an evidence span outside "
    "its document",
    503: "No index loaded yet",
}
MAX_CORRECTION_CHARS = 4000


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut, "description": _RESPONSES[code]} for code in codes}


class EvidenceIn(BaseModel):
    """The span of a document that answers the question (offsets as in citations)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    doc_id: str = Field(min_length=1)
    start: int = Field(ge=0)
    end: int = Field(ge=1)


class FeedbackIn(BaseModel):
    """A judgement of one served answer."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"answer_id": "5d1c0e2f9a7b4c3e8f6a1b2c3d4e5f60", "rating": "up"},
                {
                    "answer_id": "5d1c0e2f9a7b4c3e8f6a1b2c3d4e5f60",
                    "rating": "down",
                    "kind": "should_answer",
                    "correction": "The regulations were issued on January 10, 2019.",
                    "evidence": {"doc_id": "policy.txt", "start": 4680, "end": 4816},
                },
            ]
        },
    )

    answer_id: str = Field(min_length=1, description="The `answer_id` of the Answer rated.")
    rating: Literal["up", "down"]
    kind: FeedbackKind | None = Field(
        None,
        description="What was wrong (rating down only): wrong_answer; should_abstain (it should "
        "have said it is not in the documents); should_answer (it is in the documents); "
        "wrong_source (a wrong or missing source).",
    )
    correction: str | None = Field(
        None, max_length=MAX_CORRECTION_CHARS, description="The right answer, in your words."
    )
    evidence: EvidenceIn | None = Field(None, description="Where the documents answer it.")

    @model_validator(mode="after")
    def _kind_needs_down(self) -> FeedbackIn:
        if self.kind is not None and self.rating == "up":
            raise ValueError(
                f'kind "{self.kind}" says what was wrong with an answer rated "down"; send '
                '"kind": null with "rating": "up"'
            )
        return self


class FeedbackCreated(BaseModel):
    feedback_id: str


class EvidenceOut(BaseModel):
    doc_id: str
    start: int
    end: int
    text: str = Field(description="The span's text when it was given (kept if the index changes).")


class FeedbackOut(BaseModel):
    """One feedback record with the answer it judges, as served."""

    feedback_id: str
    answer_id: str
    rating: Literal["up", "down"]
    kind: FeedbackKind | None
    correction: str | None
    evidence: EvidenceOut | None
    created_at: str
    question: str
    standalone_question: str
    index_version: str = Field(description="The index the answer came from.")
    served_at: str
    answer: AnswerResult


class FeedbackListOut(BaseModel):
    feedback: list[FeedbackOut]
    total: int = Field(description="How many records match the filters in all.")
    limit: int
    offset: int


def feedback_router(settings: Settings, auth: list[Any]) -> APIRouter:
    """The routes; `auth` is the API-key check every route of the API has."""
    router = APIRouter(dependencies=auth)

    writes = write_guard(settings, "Feedback writes")

    @router.post(
        "/feedback",
        status_code=201,
        response_model=FeedbackCreated,
        dependencies=writes,
        responses=_errors(401, 403, 404, 422, 503),
    )
    def post_feedback(body: FeedbackIn, pipeline: Ready, state: State) -> FeedbackCreated:
        """Rate a served answer; a second rating of the same answer replaces the first."""
        evidence = None
        if body.evidence is not None:
            ev = body.evidence
            try:
                span = pipeline.document(ev.doc_id).span(ev.start, ev.end)
            except DocumentNotFoundError:
                raise InvalidSpanError(
                    f"evidence.doc_id {ev.doc_id!r} is not a document of this index; use the "
                    "doc_id of a passage or citation."
                ) from None
            assert span is not None
            evidence = Evidence(ev.doc_id, ev.start, ev.end, span["text"])
        correction = (body.correction or "").strip() or None
        record = state.answer_log().rate(
            body.answer_id,
            rating=body.rating,
            kind=body.kind,
            correction=correction,
            evidence=evidence,
        )
        return FeedbackCreated(feedback_id=record.feedback_id)

    @router.get("/feedback", response_model=FeedbackListOut, responses=_errors(401, 422))
    def list_feedback(
        state: State,
        kind: Annotated[FeedbackKind | None, Query(description="Only this kind.")] = None,
        rating: Annotated[Literal["up", "down"] | None, Query(description="Only this.")] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
        offset: Annotated[int, Query(ge=0, description="Records to skip.")] = 0,
    ) -> dict[str, Any]:
        """Feedback, oldest first, a page at a time; filter by kind or rating."""
        items, total = state.answer_log().query(
            kind=kind, rating=rating, limit=limit, offset=offset
        )
        return {
            "feedback": [f.to_dict() for f in items],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @router.delete(
        "/feedback/{feedback_id}",
        status_code=204,
        response_class=Response,
        dependencies=writes,
        responses=_errors(401, 403, 404),
    )
    def delete_feedback(feedback_id: str, state: State) -> Response:
        """Remove one feedback record (the served answer stays until its retention ends)."""
        state.answer_log().delete(feedback_id)
        return Response(status_code=204)

    return router
