"""Server-sent events for POST /ask/stream: the pipeline's StreamEvents as `event:`/`data:` lines.

The pipeline's generator is synchronous and CPU-bound, so each step runs in a worker thread and
the event loop stays free for other requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from qa import errors
from qa.pipeline import StreamEvent

log = logging.getLogger(__name__)


class EventStream(StreamingResponse):
    """Server-sent events."""

    media_type = "text/event-stream"


def sse(event: str, data: Any) -> bytes:
    # json.dumps escapes newlines, so each event's data is a single `data:` line.
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _event_bytes(event: StreamEvent) -> bytes:
    if event.kind == "passages":
        return sse("passages", [p.to_dict() for p in event.data])
    if event.kind == "delta":
        return sse("delta", {"text": event.data})
    return sse("answer", event.data.to_dict())


async def stream_events(
    first: StreamEvent,
    events: Iterator[StreamEvent],
    status_for: Callable[[errors.QAError], int],
) -> AsyncIterator[bytes]:
    """Encode `first` and then the rest of `events`; a QAError becomes an `error` event."""
    try:
        event: StreamEvent | None = first
        while event is not None:
            yield _event_bytes(event)
            event = await run_in_threadpool(next, events, None)
    except errors.QAError as exc:
        yield sse("error", {"detail": str(exc), "status": status_for(exc)})
    except Exception:
        # A bug: keep it visible in the log, and tell the client the stream failed.
        log.exception("/ask/stream failed")
        yield sse("error", {"detail": "Internal server error; see the server log.", "status": 500})
    finally:
        close = getattr(events, "close", None)  # a generator: stop it where it is
        if close is not None:
            close()
