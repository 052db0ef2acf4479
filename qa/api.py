"""The FastAPI app: /ask, /ask/stream, /search, /documents, /answerers, /healthz, /readyz.

Thin: parse the request into `qa.types`, call the Pipeline in a worker thread (retrieval is
CPU-bound; the event loop stays free), convert the result to the wire models of `qa.api_models`.
Errors become `{"detail": message}` with a status code, never a stack trace:

    InvalidQuestionError, bad JSON or types  422     UnknownAnswererError   400
    DocumentNotFoundError                    404     missing/wrong API key  401
    body over max_body_bytes                 413     index not loaded yet   503
    Corpus/IndexNotFound/IndexMismatchError  503     BackendError           502
    BackendTimeoutError                      504     ConfigError            500
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from qa import errors
from qa.api_limits import BodyLimitMiddleware, describe_validation_errors
from qa.api_models import (
    SSE_EVENT_SCHEMA,
    AnswererOut,
    AnswerersOut,
    AnswerOut,
    AskIn,
    DocumentOut,
    ErrorOut,
    HealthOut,
    ReadyOut,
    SearchOut,
)
from qa.api_stream import EventStream, stream_events
from qa.config import Settings
from qa.pipeline import Pipeline
from qa.types import Document

log = logging.getLogger(__name__)

LOADING = "The index and the embedding model are still loading; try again in a few seconds."

# Most specific class first: the first match in the MRO decides.
_STATUS: dict[type[errors.QAError], int] = {
    errors.InvalidQuestionError: 422,
    errors.UnknownAnswererError: 400,
    errors.DocumentNotFoundError: 404,
    errors.CorpusError: 503,
    errors.IndexNotFoundError: 503,
    errors.IndexMismatchError: 503,
    errors.DatabaseError: 503,
    errors.BackendTimeoutError: 504,
    errors.BackendError: 502,
    errors.ConfigError: 500,
}

_DESCRIPTIONS = {
    400: "Unknown answerer (the message lists the available ones)",
    401: "Missing or wrong API key (only when the server has one)",
    404: "No document with that id",
    413: "Request body over the size limit",
    422: "Invalid input: blank or over-long question, bad JSON, wrong types or bounds",
    502: "The answer backend (an LLM server) failed or is unreachable",
    503: "No index loaded yet, or none could be built",
    504: "The answer backend did not answer in time",
}


def status_for(exc: errors.QAError) -> int:
    """The HTTP status of a QAError (500 for one this table does not know)."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 500


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


class AppState:
    """Readiness: the pipeline once loaded, or the reason there is none yet."""

    def __init__(self, settings: Settings, pipeline: Pipeline | None) -> None:
        self.settings = settings
        self.pipeline: Pipeline | None = None
        self.reason = LOADING
        self.counts = (0, 0)
        if pipeline is not None:
            self.ready(pipeline)

    def ready(self, pipeline: Pipeline) -> None:
        self.counts = (len(pipeline.store.documents()), pipeline.store.n_chunks)
        self.pipeline = pipeline

    def failed(self, reason: str) -> None:
        self.reason = reason


def app_state(app: FastAPI) -> AppState:
    """The readiness holder of an app made by `create_app`."""
    state: AppState = app.state.qa
    return state


def _pipeline(request: Request) -> Pipeline:
    state = app_state(request.app)
    if state.pipeline is None:
        raise HTTPException(503, state.reason, headers={"Retry-After": "5"})
    return state.pipeline


Ready = Annotated[Pipeline, Depends(_pipeline)]


def _auth(settings: Settings) -> list[Any]:
    """The API-key check as a dependency list (empty when no key is configured)."""
    if settings.api_key is None:
        return []
    expected = settings.api_key.get_secret_value().encode()
    # Declares the scheme in OpenAPI (the /docs "Authorize" button); `check` does the work.
    bearer = HTTPBearer(auto_error=False, description="The server's QA_API_KEY.")
    challenge = {"WWW-Authenticate": "Bearer"}

    def check(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                401,
                "This server needs an API key: send the header `Authorization: Bearer <key>`.",
                headers=challenge,
            )
        # Constant time, so the comparison leaks nothing about the key.
        if not hmac.compare_digest(token.strip().encode(), expected):
            raise HTTPException(
                401, "Wrong API key. Check it and send it as `Bearer <key>`.", headers=challenge
            )

    return [Depends(bearer), Depends(check)]


def _highlight(doc: Document, start: int | None, end: int | None) -> dict[str, Any] | None:
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise HTTPException(422, "Give both start and end to highlight a span, or neither.")
    if not start < end <= len(doc.text):
        raise HTTPException(
            422,
            f"Span start={start}, end={end} is out of range for document {doc.id!r} "
            f"({len(doc.text)} chars): need 0 <= start < end <= {len(doc.text)}.",
        )
    return {"start": start, "end": end, "text": doc.text[start:end]}


def _api_router(settings: Settings) -> APIRouter:
    router = APIRouter(dependencies=_auth(settings))
    shown = (401, 413, 422, 503)

    # exclude_unset: `explain` appears only when asked for; null fields of the shape stay.
    @router.post(
        "/ask",
        response_model=AnswerOut,
        response_model_exclude_unset=True,
        responses=_errors(400, 502, 504, *shown),
    )
    def ask(body: AskIn, pipeline: Ready) -> dict[str, Any]:
        """Answer a question (a follow-up when history is given) with cited spans."""
        answer = pipeline.ask(body.question, **body.ask_kwargs())
        return answer.to_dict()

    @router.post(
        "/ask/stream",
        # Not EventStream: FastAPI would document its body as a plain string over ours.
        response_class=Response,
        responses={
            200: {
                "description": "Server-sent events: `passages` (list of passages), `delta` "
                '(`{"text": ...}`, repeated), `answer` (the Answer JSON of POST /ask); '
                '`error` (`{"detail", "status"}`) if it fails after the stream began.',
                "content": {"text/event-stream": {"itemSchema": SSE_EVENT_SCHEMA}},
            },
            **_errors(400, 502, 504, *shown),
        },
    )
    async def ask_stream(body: AskIn, pipeline: Ready) -> EventStream:
        """Like POST /ask, streamed: the passages, then the answer text, then the Answer."""
        events = pipeline.ask_stream(body.question, **body.ask_kwargs())
        # The first step validates and retrieves: its errors get a real status code.
        first = await run_in_threadpool(next, events, None)
        if first is None:
            raise RuntimeError("the pipeline streamed no event")
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return EventStream(stream_events(first, events, status_for), headers=headers)

    @router.get(
        "/search",
        response_model=SearchOut,
        response_model_exclude_unset=True,
        responses=_errors(*shown),
    )
    def search(
        pipeline: Ready,
        q: Annotated[str, Query(min_length=1, description="The question.")],
        k: Annotated[int | None, Query(ge=1, le=100, description="How many passages.")] = None,
        explain: Annotated[
            bool, Query(description="Add every candidate with its per-stage scores.")
        ] = False,
    ) -> dict[str, Any]:
        """The passages retrieved for a question, as `qa search --json` prints them."""
        retrieval = pipeline.explain(q, k=k)
        return retrieval.to_dict(q, explain=explain)

    @router.get(
        "/documents/{doc_id:path}", response_model=DocumentOut, responses=_errors(404, *shown)
    )
    def document(
        doc_id: str,
        pipeline: Ready,
        start: Annotated[int | None, Query(ge=0, description="Highlight from this offset.")] = None,
        end: Annotated[int | None, Query(ge=0, description="Highlight up to this offset.")] = None,
    ) -> dict[str, Any]:
        """A source document, optionally with a highlighted span (citation click-through)."""
        doc = pipeline.document(doc_id)
        return {
            "id": doc.id,
            "title": doc.title,
            "text": doc.text,
            "source": doc.source,
            "pages": list(doc.pages),
            "highlight": _highlight(doc, start, end),
        }

    @router.get("/answerers", response_model=AnswerersOut, responses=_errors(401, 503))
    def answerers(pipeline: Ready) -> AnswerersOut:
        """The registered answerers; `default` marks the one used when none is named."""
        default = pipeline.settings.answerer
        items = sorted(pipeline.answerers().items())
        return AnswerersOut(
            answerers=[AnswererOut(name=n, description=d, default=n == default) for n, d in items]
        )

    return router


def _open_router() -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=HealthOut)
    def healthz() -> HealthOut:
        """The process is alive (says nothing about the index)."""
        return HealthOut()

    @router.get("/readyz", response_model=ReadyOut, responses=_errors(503))
    def readyz(request: Request) -> ReadyOut | JSONResponse:
        """Ready to answer: the index and the models are loaded (503 with the reason if not)."""
        state = app_state(request.app)
        if state.pipeline is None:
            return JSONResponse({"detail": state.reason}, 503, headers={"Retry-After": "5"})
        settings = state.pipeline.settings
        documents, chunks = state.counts
        return ReadyOut(
            documents=documents,
            chunks=chunks,
            model=settings.embedding_model,
            answerer=settings.answerer,
        )

    return router


async def _qa_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.QAError)
    return JSONResponse({"detail": str(exc)}, status_for(exc))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": describe_validation_errors(exc.errors())}, 422)


def _document_answerers(app: FastAPI) -> None:
    """List the registered answerer names as the enum of AskIn.answerer in the OpenAPI schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from qa.answerers import available_answerers

            schema = generate()
            field = schema["components"]["schemas"]["AskIn"]["properties"]["answerer"]
            field["anyOf"][0]["enum"] = sorted(available_answerers())
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, *, pipeline: Pipeline | None = None) -> FastAPI:
    """The app; without a pipeline it answers 503 until `app_state(app).ready(p)` is called."""
    from qa.web import add_web_routes

    app = FastAPI(
        title="qa",
        version="0.1.0",
        summary="Ask questions about a folder of documents; every answer cites its source span.",
    )
    app.state.qa = AppState(settings, pipeline)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(errors.QAError, _qa_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(_api_router(settings))
    app.include_router(_open_router())
    add_web_routes(app)
    _document_answerers(app)
    return app
