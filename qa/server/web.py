"""The chat page and the document view: Jinja2 templates from web/templates, files from web/static.

The pages hold no corpus data: their scripts fetch it from the API with the user's key (if any)
and build the DOM with textContent, so document text can never run as markup.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from qa.ingest.readers import SUFFIXES
from qa.resources import resource_dir

WEB_DIR = resource_dir("web")

# Only our own files run; even a markup bug could not load or run anything else.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# What the Documents panel's file picker offers: the formats `qa index` reads.
_ACCEPT = ",".join(SUFFIXES)
_FORMATS = ", ".join(s.removeprefix(".") for s in SUFFIXES if s != ".htm")


def _static_url(name: str) -> str:
    """/static/NAME?v=<content hash>, so browsers never run a stale script after an upgrade."""
    digest = hashlib.sha256((WEB_DIR / "static" / name).read_bytes()).hexdigest()[:10]
    return f"/static/{name}?v={digest}"


def add_web_routes(app: FastAPI) -> None:
    """Mount the static files and the page routes (left out of the OpenAPI schema)."""
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    urls: dict[str, str] = {}

    def static(name: str) -> str:
        if name not in urls:
            urls[name] = _static_url(name)
        return urls[name]

    templates.env.globals["static"] = static
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    def page(request: Request, template: str, **context: Any) -> Response:
        response = templates.TemplateResponse(request, template, context)
        response.headers.update(_HEADERS)
        return response

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def chat(request: Request) -> Response:
        return page(
            request, "chat.html", script="app.js", accept=_ACCEPT, formats=f"Formats: {_FORMATS}"
        )

    @app.get("/view/{doc_id:path}", include_in_schema=False, response_class=HTMLResponse)
    def view(request: Request, doc_id: str) -> Response:
        return page(request, "view.html", script="view.js", doc_id=doc_id)
