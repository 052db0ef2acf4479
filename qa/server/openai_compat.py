"""OpenAI-compatible routes: GET /v1/models and POST /v1/chat/completions.

Any OpenAI client or chat front-end can use `qa serve` as a model provider. One model per
answerer (`qa-extractive`, `qa-openai-chat`, plugins); the last user message is the question and
the earlier turns are the history. The answer comes from the same `Pipeline.ask` / `ask_stream`
as POST /ask, so retrieval, answering and the limits (question length, body size, API key) are
the same. Errors on these routes use OpenAI's `{"error": {"message", "type", "param", "code"}}`
shape (`openai_error`), which `qa.server.app` applies to every path under /v1/.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from qa import errors
from qa.answering.llm import metered
from qa.pipeline import StreamEvent
from qa.server.models import AnswerOut
from qa.server.openai_models import (
    CHUNK_EVENT_SCHEMA,
    MODEL_PREFIX,
    ChatCompletionChunkOut,
    ChatCompletionIn,
    ChatCompletionOut,
    ModelsOut,
    OpenAIErrorOut,
)
from qa.server.openai_usage import UsageCounter
from qa.server.state import Ready, State, Work, answer, cpu_bound, recorded
from qa.server.streaming import event_stream, sse
from qa.types import Answer

PREFIX = "/v1/"

# OpenAI's machine-readable `code` per status (invalid_api_key is theirs; the rest are ours).
_CODES = {
    401: "invalid_api_key",
    413: "request_too_large",
    502: "backend_error",
    503: "not_ready",
    504: "backend_timeout",
}

_DESCRIPTIONS = {
    400: "Invalid request: bad JSON or fields, empty message list, last message not the "
    "user's, blank or over-long question",
    401: "Missing or wrong API key (only when the server has one)",
    404: "Unknown model (the message lists the available ones)",
    413: "Request body over the size limit",
    502: "The answer backend (an LLM server) failed or is unreachable",
    503: "No index loaded yet, or none could be built; or the server is busy (Retry-After)",
    504: "The answer backend did not answer in time",
}


def is_openai_path(path: str) -> bool:
    """Whether errors on this path use OpenAI's error shape."""
    return path.startswith(PREFIX)


def error_payload(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body; 4xx are invalid requests (401: authentication), 5xx server errors."""
    if status == 401:
        kind = "authentication_error"
    elif status < 500:
        kind = "invalid_request_error"
    else:
        kind = "server_error"
    return {
        "error": {
            "message": message,
            "type": kind,
            "param": param,
            "code": code or _CODES.get(status),
        }
    }


def openai_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape; invalid input is 400 there (422 elsewhere here)."""
    status = 400 if status == 422 else status
    body = error_payload(status, message, param=param, code=code)
    return JSONResponse(body, status, headers=dict(headers) if headers else None)


def qa_error_fields(exc: errors.QAError) -> dict[str, str]:
    """The `param` and `code` of a QAError on the /v1 routes."""
    if isinstance(exc, errors.UnknownModelError):
        return {"param": "model", "code": "model_not_found"}
    if isinstance(exc, errors.InvalidQuestionError):
        return {"param": "messages"}
    return {}


def model_id(answerer: str) -> str:
    return MODEL_PREFIX + answerer


def answerer_for(model: str, available: Mapping[str, str]) -> str:
    """The answerer name behind a model id (UnknownModelError listing the ids if none)."""
    name = model.removeprefix(MODEL_PREFIX)
    if not model.startswith(MODEL_PREFIX) or name not in available:
        raise errors.UnknownModelError(model, [model_id(n) for n in available])
    return name


@dataclass(frozen=True)
class Completion:
    """The envelope shared by a completion and its chunks."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, model: str) -> Completion:
        return cls(id="chatcmpl-" + secrets.token_hex(12), created=int(time.time()), model=model)

    def head(self, kind: str) -> dict[str, Any]:
        # No fingerprint or service tier to report: null, which OpenAI's reference allows.
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "service_tier": None,
        }

    def body(self, answer: Answer, usage: dict[str, int]) -> dict[str, Any]:
        """The `chat.completion` JSON of an Answer."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.answer,
            "refusal": None,
            "annotations": [],
        }
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return {
            **self.head("chat.completion"),
            "choices": [choice],
            "usage": usage,
            "qa": answer.to_dict(),
        }


@dataclass
class ChunkEncoder:
    """Pipeline events as `chat.completion.chunk` events: the role, deltas, `stop` + `qa`, and
    with `include_usage` a last chunk with `usage` and no choices (every other `usage` null)."""

    completion: Completion
    counter: UsageCounter
    include_usage: bool = False
    _answer: Answer | None = field(default=None, init=False)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        chunk = {**self.completion.head("chat.completion.chunk"), "choices": [choice]}
        return {**chunk, "usage": None} if self.include_usage else chunk

    def event(self, event: StreamEvent) -> bytes:
        if event.kind == "passages":  # retrieval is done: open the message as OpenAI does
            return sse(None, self._chunk({"role": "assistant", "content": ""}))
        if event.kind == "delta":
            return sse(None, self._chunk({"content": event.data}))
        self._answer = event.data
        return sse(None, {**self._chunk({}, "stop"), "qa": event.data.to_dict()})

    def error(self, detail: str, status: int) -> bytes:
        # The official clients raise an APIError carrying this message.
        return sse(None, error_payload(status, detail))

    def end(self) -> bytes:
        done = b"data: [DONE]\n\n"
        if not self.include_usage or self._answer is None:  # a failed stream has no usage
            return done
        head = self.completion.head("chat.completion.chunk")
        usage = self.counter.usage(self._answer)
        return sse(None, {**head, "choices": [], "usage": usage}) + done


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": OpenAIErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


def openai_router(
    status_for: Callable[[errors.QAError], int], dependencies: list[Any]
) -> APIRouter:
    """The /v1 routes; `dependencies` check the API key, `status_for` maps stream errors."""
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], dependencies=dependencies)
    started = int(time.time())

    @router.get("/models", response_model=ModelsOut, responses=_responses(401, 503))
    def models(pipeline: Ready) -> dict[str, Any]:
        """One model per answerer: `qa-<answerer>`."""
        items = sorted(pipeline.answerers().items())
        data = [
            {
                "id": model_id(n),
                "object": "model",
                "created": started,
                "owned_by": "qa",
                "description": d,
            }
            for n, d in items
        ]
        return {"object": "list", "data": data}

    @router.post(
        "/chat/completions",
        response_model=ChatCompletionOut,
        # exclude_unset: the `qa` Answer JSON has `explain` only when asked for, as in /ask.
        response_model_exclude_unset=True,
        responses={
            200: {
                "description": "A `chat.completion`, or with `stream: true` server-sent "
                "`chat.completion.chunk` events ending with `data: [DONE]` (an `error` object "
                "instead of a chunk if it fails after the stream began).",
                "content": {"text/event-stream": {"itemSchema": CHUNK_EVENT_SCHEMA}},
            },
            **_responses(400, 401, 404, 413, 502, 503, 504),
        },
    )
    async def chat_completions(
        body: ChatCompletionIn, pipeline: Ready, gate: Work, state: State
    ) -> Any:
        """Answer the last user message (earlier ones are the history), OpenAI-style."""
        answerer = answerer_for(body.model, pipeline.answerers())
        question, history = body.conversation()
        pipeline.check_question(question)  # invalid input is a 400, even when busy
        completion = Completion.new(body.model)
        meter = metered()  # the LLM server's own counts, if one answers and reports them
        texts = [m.text() for m in body.messages]
        counter = await run_in_threadpool(
            UsageCounter.load, pipeline.settings.encoding, texts, meter
        )
        if not body.stream:
            result = await answer(gate, pipeline, question, history=history, answerer=answerer)
            result = await state.served(result)
            return completion.body(result, counter.usage(result))
        events = recorded(pipeline.ask_stream(question, history=history, answerer=answerer), state)
        on_cpu = cpu_bound(pipeline, answerer)
        encoder = ChunkEncoder(completion, counter, include_usage=body.include_usage())
        return await event_stream(events, status_for, encoder, gate, cpu_bound=on_cpu)

    return router


# Referenced only from the event-stream schema; `qa.server.app` adds them to the OpenAPI components.
SCHEMA_ONLY_MODELS: tuple[type[Any], ...] = (ChatCompletionChunkOut, AnswerOut)
