"""Guards at the HTTP edge: the request-body size limit and readable validation messages."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, before anything parses them.

    Pure ASGI: a Content-Length over the limit is refused at once; otherwise the body is read
    here, counting bytes as they stream in (chunked uploads have no Content-Length), and only
    a body within the limit is handed on.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        payload: Callable[[str, str], dict[str, Any]] | None = None,
        overrides: Mapping[tuple[str, str], tuple[int, str]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # (method, path) -> (its own limit, the refusal message): uploads are far larger.
        self.overrides = dict(overrides or {})
        # The error body for (path, message): routes differ in their error shape.
        self.payload = payload or (lambda path, detail: {"detail": detail})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, detail = self.overrides.get(
            (scope["method"], scope["path"]),
            (
                self.max_bytes,
                f"The request body is over the limit of {self.max_bytes} bytes "
                "(setting max_body_bytes). Send a shorter question or history.",
            ),
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(send, scope["path"], detail)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await self._refuse(send, scope["path"], detail)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, path: str, detail: str) -> None:
        payload = json.dumps(self.payload(path, detail)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def describe_validation_errors(problems: Sequence[Any]) -> str:
    """One readable sentence for FastAPI's list of validation errors."""
    parts: list[str] = []
    for problem in problems:
        loc = [str(p) for p in problem.get("loc", ())]
        kind = problem.get("type", "")
        if kind == "json_invalid":
            why = problem.get("ctx", {}).get("error", "decode error")
            parts.append(
                f'the body is not valid JSON ({why}); send an object such as {{"question": "..."}}'
            )
            continue
        if kind == "missing" and loc == ["body"]:
            parts.append('the body is missing; send JSON such as {"question": "..."}')
            continue
        msg = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        where = ".".join(loc[1:]) if loc[:1] == ["body"] else " ".join(loc)
        parts.append(f"{where}: {msg}" if where else msg)
    return "Invalid request: " + "; ".join(p.rstrip(".") for p in parts) + "."
