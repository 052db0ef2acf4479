"""`Server-Timing` on every HTTP response: where a request's time went inside the server.

    Server-Timing: queue;dur=3.1, work;dur=5.9, total;dur=10.2

`total` runs from the app getting the request to its response headers; `queue` is the time its
CPU-bound steps waited for a worker (qa.server.admission) and `work` the time they ran there.
What `total` leaves out (the socket, the event loop before the app, the client) is the rest of
what a client measures: bench/serving.py reports both. Browsers show the header in their
developer tools.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Milliseconds per span of the request being handled (None outside a request).
_SPANS: ContextVar[dict[str, float] | None] = ContextVar("qa_server_timing", default=None)


def record(name: str, ms: float) -> None:
    """Add `ms` to span `name` of the current request (no-op outside one)."""
    spans = _SPANS.get()
    if spans is not None:
        spans[name] = spans.get(name, 0.0) + ms


class ServerTimingMiddleware:
    """Pure ASGI: times each HTTP request and adds its spans as a `Server-Timing` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        spans: dict[str, float] = {}
        token = _SPANS.set(spans)

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                total = (time.perf_counter() - t0) * 1000
                parts = [f"{k};dur={v:.1f}" for k, v in spans.items()]
                value = ", ".join([*parts, f"total;dur={total:.1f}"]).encode()
                headers = [*message.get("headers", []), (b"server-timing", value)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            _SPANS.reset(token)


def parse(header: str) -> dict[str, float]:
    """{span: ms} from a `Server-Timing` header value.

    >>> parse("queue;dur=3.1, work;dur=5.9, total;dur=10.2")
    {'queue': 3.1, 'work': 5.9, 'total': 10.2}
    """
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        for param in rest.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                out[name] = float(value)
    return out
