"""Load a corpus folder (.txt, .md, .html/.htm, .pdf, .docx, .jsonl) into Documents with stable ids.

A file's document id is its posix path relative to the corpus folder; a `.jsonl` record's id is
its own `"id"`. Files are read in sorted path order and documents come back sorted by id, so
two loads of the same folder are identical. Hidden files and folders and unknown extensions
are ignored. A file that cannot be read is logged, recorded in `CorpusLoad.skipped`, and the
rest goes on; so is a bad `.jsonl` line (as `file:line`). A second document with an id already
seen is skipped the same way (the first in path order wins), never merged or overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qa.errors import CorpusError, UploadError
from qa.ingest.clean import clean_pages, tidy
from qa.ingest.docx import DocxError, read_docx
from qa.types import Document

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".jsonl")
# A first line longer than this is a paragraph, not a title.
_MAX_TITLE_CHARS = 200
# Bad .jsonl lines logged one by one per file; the rest are counted (all are in `skipped`).
_MAX_LINE_WARNINGS = 5


@dataclass(frozen=True)
class Skipped:
    """A file (or `file:line` of a .jsonl) left out, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileInfo:
    """A corpus file and the sha256 of its bytes (recorded in the index manifest)."""

    path: str
    content_hash: str


@dataclass(frozen=True)
class CorpusLoad:
    """Everything `load_corpus` found."""

    documents: tuple[Document, ...]
    skipped: tuple[Skipped, ...]
    files: tuple[FileInfo, ...]


class _Unreadable(Exception):
    """A file that cannot become a document; the message is the reason."""


def document_hash(title: str, text: str) -> str:
    """The content hash of a document: what incremental indexing compares."""
    return hashlib.sha256(f"{title}\0{text}".encode()).hexdigest()


def make_document(
    doc_id: str, title: str, text: str, source: str, pages: tuple[int, ...] = ()
) -> Document:
    """A Document with its content hash filled in."""
    return Document(
        id=doc_id,
        title=title,
        text=text,
        source=source,
        content_hash=document_hash(title, text),
        pages=pages,
    )


def load_corpus(folder: Path) -> CorpusLoad:
    """Every readable document under `folder`, sorted by id; raises CorpusError if none."""
    folder = Path(folder)
    if not folder.exists():
        raise CorpusError(
            f"Corpus folder {folder}/ does not exist: create it and put .txt, .md, .html, .pdf, "
            ".docx or .jsonl files in it, or point --corpus-dir / QA_CORPUS_DIR at your folder."
        )
    if not folder.is_dir():
        raise CorpusError(
            f"Corpus path {folder} is a file, not a folder: point --corpus-dir / QA_CORPUS_DIR "
            "at the folder that holds your documents."
        )
    documents: dict[str, Document] = {}
    skipped: list[Skipped] = []
    files: list[FileInfo] = []
    for rel, path in sorted((p.relative_to(folder).as_posix(), p) for p in corpus_files(folder)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("Skipping %s: %s", path, exc.strerror or exc)
            skipped.append(Skipped(rel, f"cannot read it: {exc.strerror or exc}"))
            continue
        files.append(FileInfo(rel, hashlib.sha256(data).hexdigest()))
        try:
            found, bad_lines = _parse(path, rel, data)
        except _Unreadable as exc:
            log.warning("Skipping %s: %s", path, exc)
            skipped.append(Skipped(rel, str(exc)))
            continue
        skipped.extend(bad_lines)
        for doc in found:
            if doc.id in documents:
                reason = f"duplicate document id {doc.id!r} (first from {documents[doc.id].source})"
                log.warning("Skipping a document of %s: %s", path, reason)
                skipped.append(Skipped(rel, reason))
            else:
                documents[doc.id] = doc
    if not documents:
        what = "holds no readable document" if files else "is empty"
        shown = ", ".join(f"{s.path} ({s.reason})" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise CorpusError(
            f"Corpus folder {folder}/ {what}: put .txt, .md, .html, .pdf, .docx or .jsonl files "
            "in it" + (f" (skipped: {shown}{more})." if skipped else ".")
        )
    ordered = tuple(documents[k] for k in sorted(documents))
    log.info(
        "Loaded %d documents from %d files (%d skipped)", len(ordered), len(files), len(skipped)
    )
    return CorpusLoad(ordered, tuple(skipped), tuple(files))


def read_file(name: str, data: bytes) -> tuple[Document, ...]:
    """The documents one file's bytes make, read as `load_corpus` reads the file `name`.

    UploadError with the reason when it makes none (no text, not UTF-8, damaged, a zip bomb).
    """
    try:
        found, _ = _parse(Path(name), name, data)
    except _Unreadable as exc:
        raise UploadError(f"{name}: {exc}.") from None
    return tuple(found)


def corpus_files(folder: Path) -> Iterator[Path]:
    """Supported, non-hidden files under `folder`."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and name.lower().endswith(SUFFIXES):
                yield Path(root) / name


def _parse(path: Path, rel: str, data: bytes) -> tuple[list[Document], list[Skipped]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _parse_jsonl(path, rel, _decode(data))
    if suffix == ".pdf":
        title, text, pages = _parse_pdf(path, data)
    elif suffix in (".html", ".htm"):
        title, text = _parse_html(path, _decode(data))
        pages = ()
    elif suffix == ".docx":
        try:
            title, text = read_docx(data, default_title=path.stem)
        except DocxError as exc:
            raise _Unreadable(str(exc)) from None
        pages = ()
    else:
        text = _decode(data)
        title, pages = _first_line_title(text) or path.stem, ()
    if not text.strip():
        raise _Unreadable("no text in it")
    return [make_document(rel, title, text, rel, pages)], []


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Unreadable(
            f"not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    # One newline convention, so paragraph breaks look the same whatever wrote the file.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _first_line_title(text: str) -> str:
    for line in text.split("\n"):
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= _MAX_TITLE_CHARS else ""
    return ""


def _parse_jsonl(path: Path, rel: str, text: str) -> tuple[list[Document], list[Skipped]]:
    docs: list[Document] = []
    bad: list[Skipped] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line must be a JSON object")
            doc_id, title, body = record.get("id"), record.get("title", ""), record.get("text")
            if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
                raise ValueError('"id" must be a non-empty string or integer')
            if not isinstance(body, str) or not body.strip():
                raise ValueError('"text" must be a non-empty string')
            if not isinstance(title, str):
                raise ValueError('"title" must be a string')
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            bad.append(Skipped(f"{rel}:{lineno}", str(exc)))
            continue
        docs.append(make_document(str(doc_id), title, body, rel))
    if bad and not docs:
        first = bad[0]
        raise _Unreadable(f'no valid {{"id", "title", "text"}} line ({first.path}: {first.reason})')
    for item in bad[:_MAX_LINE_WARNINGS]:
        log.warning("Skipping %s%s: %s", path, item.path.removeprefix(rel), item.reason)
    if len(bad) > _MAX_LINE_WARNINGS:
        log.warning("Skipping %d more bad lines of %s", len(bad) - _MAX_LINE_WARNINGS, path)
    return docs, bad


# fmt: off
_BLOCK_TAGS = [
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th", "tr", "ul",
]
# fmt: on
_PARA, _LINE = "\x00", "\x01"  # markers that survive whitespace collapsing


def _parse_html(path: Path, html: str) -> tuple[str, str]:
    """(title, visible text): no script/style/markup; blocks become paragraphs."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe"]):
        tag.decompose()
    if not title:
        heading = soup.find(["h1", "h2", "h3", "h4", "h5", "h6"])
        title = " ".join(heading.get_text(" ").split()) if heading else path.stem
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before(_PARA)
        tag.insert_after(_PARA)
    for tag in soup.find_all("br"):
        tag.replace_with(_LINE)
    flat = re.sub(r"\s+", " ", soup.get_text())
    paragraphs = (re.sub(r" ?\x01 ?", "\n", p).strip() for p in flat.split(_PARA))
    return title, tidy("\n\n".join(p for p in paragraphs if p))


def _parse_pdf(path: Path, data: bytes) -> tuple[str, str, tuple[int, ...]]:
    """(title, cleaned text of the pages (qa.ingest.clean), start offset of each page)."""
    from pypdf import PdfReader

    # pypdf raises many exception types on damaged files; any of them means "unparsable".
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("encrypted PDF; save an unencrypted copy")
        page_texts = [(page.extract_text() or "").strip() for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except _Unreadable:
        raise
    except Exception as exc:
        raise _Unreadable(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    cleaned = clean_pages(page_texts)
    if not cleaned.text.strip():
        raise _Unreadable(
            "no extractable text in the PDF: scanned PDFs need OCR, which qa does not do; "
            "run an OCR tool on it (such as ocrmypdf) and add the result"
        )
    return " ".join(str(meta_title).split()) or path.stem, cleaned.text, cleaned.pages
