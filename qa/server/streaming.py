"""Server-sent events: the pipeline's StreamEvents encoded for POST /ask/stream or /v1 chunks.

The pipeline's generator is synchronous and CPU-bound, so each step runs on the admission gate's
workers (`qa.server.admission`) and the event loop stays free for other requests. The first step
(validation and retrieval) is admitted or shed like any request, before the response starts, so
a full queue is a plain 503; the later steps of an admitted stream queue in order behind other
work but are never refused, so a stream is not cut off midway. One loop (`stream_events`)
drives every streaming route; an `SSEEncoder` decides what each event looks like on the wire.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from qa import errors
from qa.pipeline import StreamEvent
from qa.server.admission import Gate

log = logging.getLogger(__name__)

INTERNAL = "Internal server error; see the server log."


class EventStream(StreamingResponse):
    """Server-sent events."""

    media_type = "text/event-stream"


def sse(event: str | None, data: Any) -> bytes:
    """One event; json.dumps escapes newlines, so its data is a single `data:` line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class SSEEncoder(Protocol):
    """How a streaming route writes the pipeline's events, a failure, and the end."""

    def event(self, event: StreamEvent) -> bytes:
        """The bytes of one event (b"" to send nothing for it)."""
        ...

    def error(self, detail: str, status: int) -> bytes:
        """The bytes that report a failure after the stream began."""
        ...

    def end(self) -> bytes:
        """The bytes after the last event (b"" for none)."""
        ...


class AskEncoder:
    """POST /ask/stream: `passages`, `delta`..., `answer` (or `error`) named events."""

    def event(self, event: StreamEvent) -> bytes:
        if event.kind == "passages":
            return sse("passages", [p.to_dict() for p in event.data])
        if event.kind == "delta":
            return sse("delta", {"text": event.data})
        return sse("answer", event.data.to_dict())

    def error(self, detail: str, status: int) -> bytes:
        return sse("error", {"detail": detail, "status": status})

    def end(self) -> bytes:
        return b""


async def event_stream(
    events: Iterator[StreamEvent],
    status_for: Callable[[errors.QAError], int],
    encoder: SSEEncoder,
    gate: Gate,
    *,
    cpu_bound: bool = True,
) -> EventStream:
    """The streaming response of `events`, whose first step runs before the response starts.

    That step validates and retrieves, so its errors (and Overloaded) still get a real status.
    The later steps run on the gate too when `cpu_bound`, else (an answerer waiting on an LLM)
    in the ordinary thread pool.
    """
    first = await gate.run(next, events, None)
    if first is None:
        raise RuntimeError("the pipeline streamed no event")
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if cpu_bound:
        step = functools.partial(gate.run, next, events, None, admit=False)
    else:
        step = functools.partial(run_in_threadpool, next, events, None)
    return EventStream(stream_events(first, events, status_for, encoder, step), headers=headers)


async def stream_events(
    first: StreamEvent,
    events: Iterator[StreamEvent],
    status_for: Callable[[errors.QAError], int],
    encoder: SSEEncoder,
    step: Callable[[], Awaitable[StreamEvent | None]],
) -> AsyncIterator[bytes]:
    """Encode `first` and then the rest of `events`; a QAError becomes the encoder's error."""
    try:
        event: StreamEvent | None = first
        while event is not None:
            data = encoder.event(event)
            if data:
                yield data
            event = await step()
    except errors.QAError as exc:
        yield encoder.error(str(exc), status_for(exc))
    except Exception:
        # A bug: keep it visible in the log, and tell the client the stream failed.
        log.exception("streaming an answer failed")
        yield encoder.error(INTERNAL, 500)
    finally:
        close = getattr(events, "close", None)  # a generator: stop it where it is
        if close is not None:
            # ValueError "generator already executing": the client left while a step ran on a
            # worker (that step cannot be interrupted); the generator is closed when collected.
            with contextlib.suppress(ValueError):
                close()
    end = encoder.end()
    if end:
        yield end
