"""The FastAPI app: /ask, /ask/stream, /search, /documents, /answerers, /healthz, /readyz,
and the OpenAI-compatible /v1/models and /v1/chat/completions (`qa.server.openai_compat`).

Thin: parse the request into `qa.types`, call the Pipeline on the admission gate's workers
(retrieval and answering are CPU-bound: one worker per core, a bounded FIFO queue, the event
loop stays free; `qa.server.admission`), convert the result to the wire models of
`qa.server.models`.
Errors become `{"detail": message}` with a status code, never a stack trace:

    InvalidQuestionError, bad JSON or types  422     UnknownAnswererError   400
    InvalidSpanError                         422     UnknownModelError      404
    DocumentNotFoundError, JobNotFoundError  404     missing/wrong API key  401
    Answer/FeedbackNotFoundError             404
    body over max_body_bytes                 413     index not loaded yet   503
    upload over max_upload_bytes             413     UnsupportedFileError   415
    UploadError (empty, unreadable, no text) 422     WriteForbiddenError    403
    queue full (queue_limit; Retry-After)    503
    Corpus/IndexNotFound/IndexMismatchError  503     BackendError           502
    BackendTimeoutError                      504     ConfigError            500

Under /v1/ the same errors use OpenAI's `{"error": {"message", "type", "param", "code"}}` shape,
and invalid input is 400 there, as OpenAI's clients expect.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa import errors
from qa.config import Settings
from qa.pipeline import Pipeline
from qa.server.admission import Overloaded
from qa.server.limits import BodyLimitMiddleware, describe_validation_errors
from qa.server.models import (
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
from qa.server.openai_compat import (
    SCHEMA_ONLY_MODELS,
    error_payload,
    is_openai_path,
    openai_error,
    openai_router,
    qa_error_fields,
)
from qa.server.state import LOADING as LOADING  # re-exported: the 503 message tests check
from qa.server.state import (
    AppState,
    Ready,
    State,
    Work,
    answer,
    app_state,
    cpu_bound,
    recorded,
)
from qa.server.streaming import AskEncoder, EventStream, event_stream
from qa.server.timing import ServerTimingMiddleware

log = logging.getLogger(__name__)

# Most specific class first: the first match in the MRO decides.
_STATUS: dict[type[errors.QAError], int] = {
    errors.InvalidQuestionError: 422,
    errors.InvalidSpanError: 422,
    errors.UnknownModelError: 404,
    errors.UnknownAnswererError: 400,
    errors.DocumentNotFoundError: 404,
    errors.JobNotFoundError: 404,
    errors.AnswerNotFoundError: 404,
    errors.FeedbackNotFoundError: 404,
    errors.UnsupportedFileError: 415,
    errors.FileTooLargeError: 413,
    errors.UploadError: 422,
    errors.WriteForbiddenError: 403,
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
    503: "No index loaded yet, or none could be built; or the server is busy (Retry-After)",
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


def _auth(settings: Settings) -> list[Any]:
    """The API-key check as a dependency list (empty when no key is configured)."""
    if settings.api_key is None:
        return []
    expected = settings.api_key.get_secret_value().encode()
    # Declares the scheme in OpenAPI (the /docs "Authorize" button); `check` does the work.
    bearer = HTTPBearer(auto_error=False, description="The server's QA_API_KEY.")
    challenge = {"WWW-Authenticate": "Bearer"}

    async def check(request: Request) -> None:  # async: no thread-pool hop per request
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
    async def ask(body: AskIn, pipeline: Ready, gate: Work, state: State) -> dict[str, Any]:
        """Answer a question (a follow-up when history is given) with cited spans."""
        pipeline.check_question(body.question)  # a blank question is a 422, even when busy
        result = await answer(gate, pipeline, body.question, **body.ask_kwargs())
        return (await state.served(result)).to_dict()

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
    async def ask_stream(body: AskIn, pipeline: Ready, gate: Work, state: State) -> EventStream:
        """Like POST /ask, streamed: the passages, then the answer text, then the Answer."""
        pipeline.check_question(body.question)
        kwargs = body.ask_kwargs()
        events = recorded(pipeline.ask_stream(body.question, **kwargs), state)
        on_cpu = cpu_bound(pipeline, kwargs.get("answerer"))
        return await event_stream(events, status_for, AskEncoder(), gate, cpu_bound=on_cpu)

    @router.get(
        "/search",
        response_model=SearchOut,
        response_model_exclude_unset=True,
        responses=_errors(*shown),
    )
    async def search(
        pipeline: Ready,
        gate: Work,
        q: Annotated[
            str,
            # The pattern documents "not blank"; the pipeline checks it, with its own message.
            Query(min_length=1, description="The question.", json_schema_extra={"pattern": r"\S"}),
        ],
        k: Annotated[int | None, Query(ge=1, le=100, description="How many passages.")] = None,
        explain: Annotated[
            bool, Query(description="Add every candidate with its per-stage scores.")
        ] = False,
    ) -> dict[str, Any]:
        """The passages retrieved for a question, as `qa search --json` prints them."""
        pipeline.check_question(q)
        retrieval = await gate.run(pipeline.explain, q, k=k)
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
        return pipeline.document(doc_id).to_dict(start, end)

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
            embedding_backend=settings.embedding_backend,
            embedding_dtype=settings.embedding_dtype,
            embedding_backend_reason=state.pipeline.backend_reason,
            answerer=settings.answerer,
            verifier=state.pipeline.verifier_version(),
            warming_sentences=state.warmup.running,
            warmed_sentences=state.warmup.sentences,
        )

    return router


def _error(
    request: Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    fields: dict[str, str | None] | None = None,
) -> JSONResponse:
    """`{"detail": message}`, or OpenAI's error shape (with `fields`) under /v1/."""
    if is_openai_path(request.url.path):
        return openai_error(status, message, headers=headers, **(fields or {}))
    return JSONResponse({"detail": message}, status, headers=headers)


async def _qa_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.QAError)
    return _error(request, status_for(exc), str(exc), fields=dict(qa_error_fields(exc)))


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Overloaded)
    headers = {"Retry-After": str(exc.retry_after)}
    return _error(request, 503, str(exc), headers=headers, fields={"code": "overloaded"})


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    loc = [str(p) for p in problems[0].get("loc", ())] if problems else []
    # The body field at fault, for OpenAI's `param` ("messages.0.role").
    param = ".".join(loc[1:]) if loc[:1] == ["body"] and len(loc) > 1 else None
    message = describe_validation_errors(problems)
    return _error(request, 422, message, fields={"param": param})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # One route per method: Starlette's Allow names the first route's only (GET, where
        # /documents also takes POST); list every method the path takes.
        path = request.url.path
        allowed = {
            method
            for route in request.app.routes
            if isinstance(route, APIRoute) and route.path_regex.match(path)
            for method in route.methods or ()
        }
        headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(allowed))}
        exc = StarletteHTTPException(405, exc.detail, headers=headers)
    if is_openai_path(request.url.path):
        return openai_error(exc.status_code, str(exc.detail), headers=exc.headers)
    return await http_exception_handler(request, exc)


def _limit_payload(path: str, detail: str) -> dict[str, Any]:
    return error_payload(413, detail) if is_openai_path(path) else {"detail": detail}


def _document_answerers(app: FastAPI) -> None:
    """List the registered answerer names as the enum of AskIn.answerer in the OpenAPI schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from qa.answering.registry import available_answerers

            schema = generate()
            components = schema["components"]["schemas"]
            field = components["AskIn"]["properties"]["answerer"]
            field["anyOf"][0]["enum"] = sorted(available_answerers())
            for model in SCHEMA_ONLY_MODELS:  # named by the /v1 event-stream schema only
                extra = model.model_json_schema(
                    ref_template="#/components/schemas/{model}", mode="serialization"
                )
                for name, item in {**extra.pop("$defs", {}), model.__name__: extra}.items():
                    components.setdefault(name, item)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, *, pipeline: Pipeline | None = None) -> FastAPI:
    """The app; without a pipeline it answers 503 until `app_state(app).ready(p)` is called.

    While it runs it follows the index (`qa.server.live`): jobs swap it, and a change made
    elsewhere is noticed within settings.watch_interval seconds.
    """
    from qa.server.documents import documents_router
    from qa.server.feedback import feedback_router
    from qa.server.live import Live
    from qa.server.web import add_web_routes

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live.watch(settings.watch_interval)
        yield
        live.stop()
        app.state.qa.warmup.stop()
        app.state.qa.close()

    app = FastAPI(
        title="qa",
        version="0.1.0",
        summary="Ask questions about a folder of documents; every answer cites its source span.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN, so offline they are
        # blank; /openapi.json stays, and the docs site renders the same schema.
        docs_url=None,
        redoc_url=None,
    )
    app.state.qa = AppState(settings, pipeline)
    live = app.state.live = Live(app.state.qa)
    app.state.qa.warmup.pause_while(lambda: live.jobs.pending() > 0)
    upload_limit = (
        # The multipart framing around the files is small; the route checks the files' bytes.
        settings.max_upload_bytes + 64 * 1024,
        f"The upload is over the limit of {settings.max_upload_bytes} bytes (setting "
        "max_upload_bytes). Upload fewer or smaller files at a time.",
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        payload=_limit_payload,
        overrides={("POST", "/documents"): upload_limit},
    )
    app.add_middleware(ServerTimingMiddleware)  # outermost: its total includes the body read
    app.add_exception_handler(errors.QAError, _qa_error)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(_api_router(settings))
    app.include_router(documents_router(settings, _auth(settings)))
    app.include_router(feedback_router(settings, _auth(settings)))
    app.include_router(openai_router(status_for, _auth(settings)))
    app.include_router(_open_router())
    add_web_routes(app)
    _document_answerers(app)
    return app
