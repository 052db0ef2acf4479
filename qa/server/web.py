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

from qa.config import Settings
from qa.ingest.uploads import TYPES
from qa.resources import resource_dir
from qa.server.documents import write_refusal
from qa.server.state import app_state

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


def _static_url(name: str) -> str:
    """/static/NAME?v=<content hash>, so browsers never run a stale script after an upgrade."""
    digest = hashlib.sha256((WEB_DIR / "static" / name).read_bytes()).hexdigest()[:10]
    return f"/static/{name}?v={digest}"


def _uploads(settings: Settings) -> dict[str, Any]:
    """What the Documents panel offers: the file types the server takes, its size limit, and
    why it takes none (uploads and deletes off here), so the page does not offer them in vain."""
    mib = settings.max_upload_bytes / 2**20
    return {
        "upload_refusal": write_refusal(settings),
        "upload_accept": ",".join(end for kind in settings.upload_types for end in TYPES[kind]),
        "upload_hint": f"{', '.join(settings.upload_types)}; up to {mib:.3g} MB at a time",
    }


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
        return page(request, "chat.html", script="app.js", **_uploads(app_state(app).settings))

    @app.get("/view/{doc_id:path}", include_in_schema=False, response_class=HTMLResponse)
    def view(request: Request, doc_id: str) -> Response:
        return page(request, "view.html", script="view.js", doc_id=doc_id)
