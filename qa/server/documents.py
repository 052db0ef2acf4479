"""Documents while the server runs: list, upload, delete (`/documents`) and the jobs (`/jobs`).

The corpus folder is the source of truth: an upload is checked and saved into it before the
request answers 202 (`qa.ingest.uploads`), a delete removes the file at once, and a job then
brings the index in line (`qa.server.live`). Who may write: anyone on a loopback host, else
only with the server's API key (setting `uploads`); reads keep the API's rule.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Request, UploadFile

from qa.config import Settings
from qa.errors import (
    ConfigError,
    DocumentNotFoundError,
    FileTooLargeError,
    UploadError,
    WriteForbiddenError,
)
from qa.ingest.ocr import OcrOptions
from qa.ingest.uploads import check_upload, corpus_file, remove_file, save_upload, type_of_name
from qa.pipeline import Pipeline
from qa.server.jobs import FileStatus, Job
from qa.server.live import Live
from qa.server.models import DocumentInfoOut, DocumentsOut, ErrorOut, JobAccepted, JobOut
from qa.server.state import Ready
from qa.types import DocumentInfo

_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "The body is not valid multipart/form-data (send files as parts named `files`)",
        401: "Missing or wrong API key (only when the server has one)",
        403: "Uploads and deletes are off here (see the setting `uploads`)",
        404: "No such document or job",
        413: "The upload is over max_upload_bytes",
        415: "Not a type qa reads, judged by the content (PDF, DOCX, UTF-8 text, HTML, image)",
        422: "Empty, unreadable, an image or scan over the OCR limits (ocr_max_pixels, "
        "ocr_max_pages), or a scan without the OCR extra installed",
        503: "No index loaded yet",
    }.items()
}


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def write_refusal(settings: Settings) -> str | None:
    """Why uploads and deletes are refused on this server, or None when they are allowed."""
    if settings.uploads == "off":
        return (
            "Uploads and deletes are off on this server (setting uploads=off). Put the file "
            "in its corpus folder and run `qa index` instead."
        )
    if settings.api_key is None and not is_loopback(settings.host):
        return (
            f"Uploads and deletes are off: this server listens on {settings.host}, beyond this "
            "machine, and has no API key. Set api_key (QA_API_KEY) on the server, then send it "
            "as `Authorization: Bearer <key>`."
        )
    return None


def write_guard(settings: Settings, what: str = "Uploads and deletes") -> list[Any]:
    """The dependency of every writing route: refuse with `write_refusal`, naming `what`."""

    async def may_write() -> None:
        refusal = write_refusal(settings)
        if refusal is not None:
            raise WriteForbiddenError(refusal.replace("Uploads and deletes", what))

    return [Depends(may_write)]


def check_write_access(settings: Settings) -> None:
    """Refuse to serve with writes open to the network (uploads=on, another host, no key)."""
    if settings.uploads == "on" and write_refusal(settings) is not None:
        raise ConfigError(
            f"uploads=on would let anyone who reaches {settings.host} add and delete documents. "
            "Set api_key (--api-key / QA_API_KEY), or set uploads=auto to serve with uploads "
            "off on this host, or listen on 127.0.0.1."
        )


async def live_of(request: Request) -> Live:
    """The app's `Live` (index swaps and jobs); async: no thread-pool hop per request."""
    live: Live = request.app.state.live
    return live


LiveDep = Annotated[Live, Depends(live_of)]


def documents_router(settings: Settings, auth: list[Any]) -> APIRouter:
    """The routes; `auth` is the API-key check every route of the API has."""
    router = APIRouter(dependencies=auth)

    writes = write_guard(settings)

    @router.get("/documents", response_model=DocumentsOut, responses=_errors(401, 503))
    def documents(pipeline: Ready) -> DocumentsOut:
        """Every indexed document with its type, pages, chunks, file size and when it was added."""
        return DocumentsOut(
            documents=[_listed(corpus_of(pipeline), d) for d in pipeline.store.document_list()]
        )

    @router.post(
        "/documents",
        status_code=202,
        response_model=JobAccepted,
        dependencies=writes,
        responses=_errors(400, 401, 403, 413, 415, 422, 503),
    )
    def upload(
        pipeline: Ready,
        live: LiveDep,
        files: Annotated[
            list[UploadFile],
            File(
                description="One or more .txt, .md, .html, .pdf, .docx, .png, .jpg, .tiff, "
                ".webp files."
            ),
        ],
    ) -> JobAccepted:
        """Add documents: each is checked, saved into the corpus folder, then indexed by a job."""
        checked, total = [], 0
        for part in files:
            data = part.file.read(settings.max_upload_bytes + 1)
            total += len(data)
            if total > settings.max_upload_bytes:
                raise FileTooLargeError(
                    f"The upload is over the limit of {settings.max_upload_bytes} bytes (setting "
                    "max_upload_bytes). Upload fewer or smaller files at a time."
                )
            checked.append(
                check_upload(
                    part.filename or "upload",
                    data,
                    allowed=settings.upload_types,
                    max_bytes=settings.max_upload_bytes,
                    ocr=OcrOptions.of(settings),
                )
            )
        # Every file is checked before any is saved: a request is taken whole or not at all.
        saved = [save_upload(corpus_of(pipeline), u) for u in checked]
        job = live.jobs.submit("upload", [FileStatus(name=n, doc_id=n) for n in saved])
        return JobAccepted(job_id=job.job_id)

    @router.delete(
        "/documents/{doc_id:path}",
        status_code=202,
        response_model=JobAccepted,
        dependencies=writes,
        responses=_errors(401, 403, 404, 422, 503),
    )
    def delete(doc_id: str, pipeline: Ready, live: LiveDep) -> JobAccepted:
        """Remove a document: its file leaves the corpus folder now, the index follows (a job)."""
        corpus = corpus_of(pipeline)
        try:
            source = pipeline.store.document(doc_id).source
        except DocumentNotFoundError:
            # Uploaded but not indexed yet: its file may still be removed.
            if (
                type_of_name(doc_id) is None
                or not corpus_file(settings.corpus_dir, doc_id).is_file()
            ):
                raise
            source = doc_id
        if source != doc_id:
            raise UploadError(
                f"{doc_id!r} is one record of {source}, which holds other documents too: edit "
                f"{source} in the corpus folder and run `qa index`."
            )
        remove_file(corpus, source)
        job = live.jobs.submit("delete", [FileStatus(name=source, doc_id=doc_id)])
        return JobAccepted(job_id=job.job_id)

    @router.get("/jobs/{job_id}", response_model=JobOut, responses=_errors(401, 404))
    async def job(job_id: str, live: LiveDep) -> JobOut:
        """How an upload or delete job is doing: its state, progress, and each file's outcome."""
        return _job_out(live.jobs.get(job_id))

    return router


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _RESPONSES[code] for code in codes}


def corpus_of(pipeline: Pipeline) -> Path:
    """The corpus folder of the index a pipeline serves (the one its jobs rebuild from)."""
    return Path(pipeline.opened_with.corpus_dir)


def _listed(corpus: Path, info: DocumentInfo) -> DocumentInfoOut:
    size: int | None = None
    added: str | None = None
    try:
        stat = corpus_file(corpus, info.source).stat()
        size = stat.st_size
        added = datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OSError, DocumentNotFoundError):
        pass  # removed from the folder, not yet from the index: shown until the job ends
    suffix = info.source.rsplit(".", 1)[-1].lower() if "." in info.source else ""
    return DocumentInfoOut(
        doc_id=info.id,
        title=info.title,
        type=type_of_name(info.source) or suffix,
        pages=info.n_pages or None,
        chunks=info.n_chunks,
        bytes=size,
        added=added,
    )


def _job_out(job: Job) -> JobOut:
    return JobOut.model_validate(
        {
            "job_id": job.job_id,
            "state": job.state,
            "progress": vars(job.progress),
            "files": [vars(f) for f in job.files],
        }
    )
