"""A small client for OpenAI-compatible chat-completions servers (OpenAI, Ollama, vLLM, llama.cpp).

It speaks plain HTTP through httpx (no `openai` dependency), retries connect errors and 5xx
answers with exponential backoff, parses the server-sent-events stream, and maps every transport
failure to `BackendError` / `BackendTimeoutError` with a message that names the backend URL and
the setting to change. The API key is only ever put in the Authorization header: it is never
logged and is scrubbed from any text that reaches an error message.

>>> client = ChatClient("http://127.0.0.1:8080/v1", model="local")  # doctest: +SKIP
>>> client.complete([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
'Hello! How can I help?'
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from qa.errors import BackendError, BackendTimeoutError

if TYPE_CHECKING:
    import httpx

    from qa.config import Settings

log = logging.getLogger(__name__)

Message = dict[str, str]
T = TypeVar("T")

# Statuses worth another try: the server is overloaded or restarting, not refusing us.
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 8.0


@dataclass
class TokenUsage:
    """Tokens the LLM server says it read and wrote for one request to qa (summed over calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0  # replies the server finished
    reported: int = 0  # ... of which carried a `usage` object

    @property
    def complete(self) -> bool:
        """Whether the server counted every call (a partial sum would undercount)."""
        return 0 < self.calls == self.reported

    def add(self, usage: object) -> None:
        """Count one finished call and its OpenAI `usage` object (None: it sent none)."""
        self.calls += 1
        if not isinstance(usage, dict):
            return
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.reported += 1


# The meter of the request being answered, if its caller asked for one (`metered`). A context
# variable, so worker threads that run the request in its context add to the right meter.
_METER: ContextVar[TokenUsage | None] = ContextVar("qa_llm_usage", default=None)


def metered() -> TokenUsage:
    """A new meter that every LLM call made in this context (and copies of it) adds to."""
    meter = TokenUsage()
    _METER.set(meter)
    return meter


def _record(usage: object) -> None:
    meter = _METER.get()
    if meter is not None:
        meter.add(usage)


class _Retryable(Exception):
    """Internal: one attempt failed in a way another attempt may fix."""

    def __init__(self, error: BackendError) -> None:
        self.error = error


class ChatClient:
    """Chat completions against `base_url` (ending in /v1), blocking or streamed."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        temperature: float = 0.0,
        max_tokens: int = 512,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._api_key = api_key or None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatClient:
        """A client configured by the `llm_*` settings."""
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return cls(
            settings.llm_base_url,
            model=settings.llm_model,
            api_key=key,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
        )

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient({self.base_url!r}, model={self.model!r})"

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def request_body(
        self, messages: Sequence[Message], *, stream: bool = False, max_tokens: int | None = None
    ) -> dict[str, Any]:
        """The JSON body of a chat-completions request."""
        return {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.temperature,
            "max_tokens": max_tokens or self.max_tokens,
            "stream": stream,
            # The server's own token counts on the last chunk (OpenAI, vLLM, Ollama, llama.cpp).
            **({"stream_options": {"include_usage": True}} if stream else {}),
        }

    def complete(self, messages: Sequence[Message], *, max_tokens: int | None = None) -> str:
        """The assistant's reply to `messages` (non-streamed)."""
        body = self.request_body(messages, max_tokens=max_tokens)

        def attempt() -> str:
            http = self._http()
            response = self._guard(lambda: http.post(self.url, json=body))
            self._check_status(response.status_code, response.text)
            payload = self._json(response.text)
            content = _content_of(payload)
            _record(payload.get("usage"))
            return content

        return self._with_retries(attempt)

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int | None = None
    ) -> Iterator[str]:
        """Text deltas of the assistant's reply as the server streams them (SSE).

        Retries happen only before the first delta: a half-delivered answer is never repeated.
        """
        body = self.request_body(messages, stream=True, max_tokens=max_tokens)
        http = self._http()

        def open_stream() -> httpx.Response:
            request = http.build_request("POST", self.url, json=body)
            response = self._guard(lambda: http.send(request, stream=True))
            if response.status_code >= 400:
                text = self._guard(lambda: response.read().decode("utf-8", "replace"))
                response.close()
                self._check_status(response.status_code, text)
            return response

        response = self._with_retries(open_stream)
        usage: list[object] = []  # the usage-only last chunk, if the server sends one
        try:
            lines = response.iter_lines()
            while True:
                try:
                    line = self._guard(lambda: next(lines, None))
                except _Retryable as exc:  # the connection dropped mid-answer: no retry
                    raise exc.error from None
                if line is None:
                    break
                delta = self._parse_sse_line(line, usage)
                if delta is _DONE:
                    break
                if delta:
                    yield str(delta)
            _record(usage[-1] if usage else None)
        finally:
            response.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- internals ------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        with self._lock:  # answerers are shared by the API's worker threads
            if self._client is None:
                import httpx

                headers = {"Accept": "application/json"}
                if self._api_key:
                    headers["Authorization"] = f"Bearer {self._api_key}"
                timeout = httpx.Timeout(self.timeout)
                self._client = httpx.Client(timeout=timeout, headers=headers)
            return self._client

    def _with_retries(self, attempt: Callable[[], T]) -> T:
        for n in range(self.max_retries + 1):
            try:
                return attempt()
            except _Retryable as exc:
                if n == self.max_retries:
                    raise exc.error from None
                delay = min(_BACKOFF_S * 2**n, _MAX_BACKOFF_S)
                log.warning("%s; retry %d/%d in %.1fs", exc.error, n + 1, self.max_retries, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _guard(self, call: Callable[[], T]) -> T:
        """Run one httpx call, mapping transport errors to ours (connect errors retryable)."""
        import httpx

        try:
            return call()
        except httpx.TimeoutException as exc:
            # A connect timeout means nobody is listening in time: as retryable as a refusal.
            if isinstance(exc, httpx.ConnectTimeout):
                raise _Retryable(self._unreachable(exc)) from None
            raise BackendTimeoutError(
                f"The LLM backend at {self.base_url} did not answer within {self.timeout:g}s "
                f"({type(exc).__name__}). Raise QA_LLM_TIMEOUT (llm_timeout) or use a "
                "faster model/server."
            ) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(self._unreachable(exc)) from None
        except httpx.HTTPError as exc:
            raise BackendError(
                f"The LLM backend at {self.base_url} failed: {self._scrub(str(exc))}."
            ) from None

    def _unreachable(self, exc: Exception) -> BackendError:
        reason = self._scrub(str(exc)) or type(exc).__name__
        return BackendError(
            f"The LLM backend at {self.base_url} is unreachable: {reason}. "
            "Start it or set QA_LLM_BASE_URL."
        )

    def _check_status(self, status: int, text: str) -> None:
        if status < 400:
            return
        detail = self._scrub(_error_detail(text))
        hint = {
            401: " Check QA_LLM_API_KEY.",
            403: " Check QA_LLM_API_KEY.",
            404: (
                f" Check QA_LLM_BASE_URL (it should end in /v1) and QA_LLM_MODEL ({self.model!r})."
            ),
        }.get(status, "")
        error = BackendError(
            f"The LLM backend at {self.base_url} answered HTTP {status}: {detail}.{hint}"
        )
        if status in _RETRY_STATUSES:
            raise _Retryable(error)
        raise error

    def _json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise BackendError(
                f"The LLM backend at {self.base_url} sent a reply that is not JSON: "
                f"{self._scrub(text[:200])!r}. Is QA_LLM_BASE_URL an OpenAI-compatible /v1 URL?"
            ) from None

    def _parse_sse_line(self, line: str, usage: list[object]) -> str | object | None:
        """The content delta of one SSE line, `_DONE` at the end marker, None for the rest;
        a `usage` object is appended to `usage`."""
        if not line.startswith("data:"):
            return None  # comments (": ping"), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return _DONE
        event = self._json(data)
        if isinstance(event, dict) and event.get("usage"):
            usage.append(event["usage"])
        if isinstance(event, dict) and event.get("error"):
            raise BackendError(
                f"The LLM backend at {self.base_url} failed mid-stream: "
                f"{self._scrub(_error_detail(json.dumps(event)))}."
            )
        try:
            choice = event["choices"][0]
        except (KeyError, IndexError, TypeError):
            return None  # e.g. a final usage-only event
        delta = choice.get("delta") or {}
        return delta.get("content") or None

    def _scrub(self, text: str) -> str:
        """`text` with the API key blanked out (servers sometimes echo request headers)."""
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text


_DONE = object()


def _content_of(payload: Any) -> str:
    """The assistant text of a chat-completions JSON reply."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BackendError(
            f"The LLM backend sent a reply without choices[0].message.content: "
            f"{json.dumps(payload)[:200]}."
        ) from None
    return content or ""


def _error_detail(text: str) -> str:
    """A short human message from an error body (OpenAI `{"error": {"message": ...}}` or text)."""
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "(empty body)"
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(payload)[:300]
