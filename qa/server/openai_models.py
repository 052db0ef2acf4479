"""The wire format of the OpenAI-compatible routes (/v1/models, /v1/chat/completions).

Field names follow OpenAI's Chat Completions API, so its official clients and the chat
front-ends built on them parse our answers unchanged. Our own data rides in one extra field,
`qa`: the Answer JSON of POST /ask (citations with exact spans, `abstained`, passages).
Requests accept and ignore OpenAI's other options (temperature, max_tokens, user, tools ...):
the answerer decides how it answers, with one choice (`n` above 1 is refused, not ignored: a
client asking for several choices would otherwise wait for ones that never come).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qa.server.models import AnswerOut
from qa.types import Turn

MODEL_PREFIX = "qa-"


class TextPartIn(BaseModel):
    """One text part of a message's content (the only part type a question can use)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """One message; system and developer messages are accepted and ignored."""

    # Front-ends send more (name, tool_calls, refusal ...); none of it changes the answer.
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPartIn] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptionsIn(BaseModel):
    """OpenAI's `stream_options`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool | None = Field(
        None, description="Send a last chunk with `usage` and no choices before `[DONE]`."
    )


class ChatCompletionIn(BaseModel):
    """A chat completion request: the last user message is the question."""

    # Strict: 0 is not a bool; OpenAI's other options (temperature, n, ...) are ignored.
    model_config = ConfigDict(
        extra="ignore",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "qa-extractive",
                    "messages": [
                        {"role": "user", "content": "What must blockchain services file?"},
                        {"role": "assistant", "content": "They must fill in the filing [1]."},
                        {"role": "user", "content": "How many projects were in the first batch?"},
                    ],
                }
            ]
        },
    )

    model: str = Field(description="qa-<answerer>, as listed by GET /v1/models.")
    messages: list[ChatMessageIn] = Field(
        description="The conversation, oldest first; the last message is the user's question.",
        json_schema_extra={"minItems": 1},
    )
    stream: bool | None = Field(
        False, description="Send `chat.completion.chunk` events, ending with `data: [DONE]`."
    )
    stream_options: StreamOptionsIn | None = None
    n: int | None = Field(None, description="How many choices: 1 (qa gives one answer).")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError(
                f"n={value} is not supported: qa gives one answer per question. "
                "Send n=1 or leave n out."
            )
        return value

    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @field_validator("messages")
    @classmethod
    def _question_last(cls, value: list[ChatMessageIn]) -> list[ChatMessageIn]:
        if not value:
            raise ValueError(
                "The message list is empty. Send at least one user message: the question."
            )
        if value[-1].role != "user":
            raise ValueError(
                f"The last message is from {value[-1].role!r}; it must be the user's question "
                "(role 'user'). End the list with the question to answer."
            )
        return value

    def conversation(self) -> tuple[str, tuple[Turn, ...]]:
        """The question (last message) and the earlier user/assistant turns as history."""
        *earlier, last = self.messages
        history = tuple(
            Turn(role=m.role, content=m.text())
            for m in earlier
            if m.role in ("user", "assistant") and m.text().strip()
        )
        return last.text(), history


class ModelOut(BaseModel):
    """One answerer, as an OpenAI model."""

    id: str = Field(description="qa-<answerer>.")
    object: Literal["model"]
    created: int = Field(description="When this server started (Unix seconds).")
    owned_by: str
    description: str = Field(description="What the answerer does.")


class ModelsOut(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


class MessageOut(BaseModel):
    role: Literal["assistant"]
    content: str = Field(description="The answer text with its [n] citation markers.")
    refusal: None
    annotations: list[Any] = Field(description="Always empty: the citations are in `qa`.")


class UsageOut(BaseModel):
    """Tokens of the request: the LLM server's counts, or the index's tiktoken encoding's."""

    prompt_tokens: int = Field(
        description="The LLM server's prompt, or the messages plus the passages read."
    )
    completion_tokens: int = Field(description="The answer text.")
    total_tokens: int


class ChoiceOut(BaseModel):
    index: int
    message: MessageOut
    finish_reason: Literal["stop"]
    logprobs: None


_QA_FIELD = (
    "Extra field (not OpenAI's): the Answer JSON of POST /ask, with `citations` (exact spans), "
    "`abstained` and `abstain_reason`, `passages` and `short_answer`. Clients that only read "
    "`choices` ignore it."
)


class ChatCompletionOut(BaseModel):
    """A `chat.completion`; `qa` carries the citations and the abstained flag."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut
    system_fingerprint: None
    service_tier: None
    qa: AnswerOut = Field(description=_QA_FIELD)


class DeltaOut(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoiceOut(BaseModel):
    index: int
    delta: DeltaOut
    finish_reason: Literal["stop"] | None
    logprobs: None


class ChatCompletionChunkOut(BaseModel):
    """One `chat.completion.chunk`: the role first, then text deltas, then `stop` with `qa`;
    with `stream_options.include_usage`, a last chunk with `usage` and no choices."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoiceOut]
    system_fingerprint: None
    service_tier: None
    usage: UsageOut | None = Field(
        None, description="With include_usage: null, except on the last chunk."
    )
    qa: AnswerOut | None = Field(None, description="Only on the last chunk: " + _QA_FIELD)


class OpenAIErrorBody(BaseModel):
    message: str = Field(description="What is wrong and how to fix it.")
    type: str = Field(description="invalid_request_error, authentication_error or server_error.")
    param: str | None = Field(description="The request field at fault, when one is.")
    code: str | None = Field(description="model_not_found, invalid_api_key, ... or null.")


class OpenAIErrorOut(BaseModel):
    """Every error of the /v1 routes, in OpenAI's shape."""

    error: OpenAIErrorBody


def _chunk_event_schema() -> dict[str, Any]:
    payload = {
        "anyOf": [
            {"$ref": "#/components/schemas/ChatCompletionChunkOut"},
            {"$ref": "#/components/schemas/OpenAIErrorOut"},
        ]
    }
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": payload,
                    },
                ]
            }
        },
    }


# Each server-sent event of a streamed chat completion (OpenAPI `itemSchema`).
CHUNK_EVENT_SCHEMA: dict[str, Any] = _chunk_event_schema()
