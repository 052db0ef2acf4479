"""Load a corpus folder (.txt, .md, .html/.htm, .pdf, .docx, .jsonl, images) into Documents.

A file's document id is its posix path relative to the corpus folder; a `.jsonl` record's id is
its own `"id"`. Files are read in sorted path order and documents come back sorted by id, so
two loads of the same folder are identical. Hidden files and folders and unknown extensions
are ignored. A file that cannot be read is logged, recorded in `CorpusLoad.skipped`, and the
rest goes on; so is a bad `.jsonl` line (as `file:line`). A second document with an id already
seen is skipped the same way (the first in path order wins), never merged or overwritten.

Images (.png, .jpg/.jpeg, .tif/.tiff, .webp) and the PDF pages without a usable text layer are
read by OCR (`qa.ingest.ocr`), after every other file, so the pages to recognise are counted
first and `on_pages(done, total)` can follow them. Their lines go through the same clean-up as
a text PDF's, and each page keeps its number.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa.errors import CorpusError, UploadError
from qa.ingest.clean import clean_pages, tidy
from qa.ingest.docx import DocxError, read_docx
from qa.ingest.ocr import IMAGE_SUFFIXES, OcrCache, OcrOptions, image_pages, pdf_page, require
from qa.types import Document

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf", ".docx", ".jsonl", *IMAGE_SUFFIXES)
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


@dataclass(frozen=True)
class _Scan:
    """A file with pages to recognise: each page's text, None where OCR must read it."""

    rel: str
    title: str
    data: bytes
    texts: tuple[str | None, ...]
    pdf: bool

    @property
    def todo(self) -> int:
        return sum(1 for t in self.texts if t is None)


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


def load_corpus(
    folder: Path,
    *,
    ocr: OcrOptions | None = None,
    ocr_cache: Path | None = None,
    on_pages: Callable[[int, int], None] | None = None,
) -> CorpusLoad:
    """Every readable document under `folder`, sorted by id; raises CorpusError if none.

    Pages to recognise are read as `ocr` says, their text kept under `ocr_cache`, and counted
    by `on_pages(done, total)`.
    """
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
    options = ocr or OcrOptions()
    scans: list[_Scan] = []
    for rel, path in sorted((p.relative_to(folder).as_posix(), p) for p in corpus_files(folder)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("Skipping %s: %s", path, exc.strerror or exc)
            skipped.append(Skipped(rel, f"cannot read it: {exc.strerror or exc}"))
            continue
        files.append(FileInfo(rel, hashlib.sha256(data).hexdigest()))
        try:
            parsed = _parse(path, rel, data, options)
        except _Unreadable as exc:
            log.warning("Skipping %s: %s", path, exc)
            skipped.append(Skipped(rel, str(exc)))
            continue
        if isinstance(parsed, _Scan):
            scans.append(parsed)
            continue
        skipped.extend(parsed[1])
        _add(documents, parsed[0], rel, skipped)
    if scans:
        read = _read_scans(scans, OcrCache(ocr_cache, options), options, on_pages)
        for scan in scans:
            got = read[scan.rel]
            if isinstance(got, _Unreadable):
                log.warning("Skipping %s: %s", folder / scan.rel, got)
                skipped.append(Skipped(scan.rel, str(got)))
            else:
                _add(documents, [got], scan.rel, skipped)
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


def read_file(name: str, data: bytes, *, ocr: OcrOptions | None = None) -> tuple[Document, ...]:
    """The documents one file's bytes make, read as `load_corpus` reads the file `name`.

    UploadError with the reason when it makes none (no text, not UTF-8, damaged, a zip bomb,
    an image over the OCR limits, OCR not installed). Pages to recognise are checked, not
    read (that is the slow part, left to indexing): a scan gives no documents here.
    """
    try:
        parsed = _parse(Path(name), name, data, ocr or OcrOptions())
    except _Unreadable as exc:
        raise UploadError(f"{name}: {exc}.") from None
    return () if isinstance(parsed, _Scan) else tuple(parsed[0])


def _add(
    documents: dict[str, Document], found: list[Document], rel: str, skipped: list[Skipped]
) -> None:
    for doc in found:
        if doc.id in documents:
            reason = f"duplicate document id {doc.id!r} (first from {documents[doc.id].source})"
            log.warning("Skipping a document of %s: %s", rel, reason)
            skipped.append(Skipped(rel, reason))
        else:
            documents[doc.id] = doc


def _read_scans(
    scans: list[_Scan],
    cache: OcrCache,
    options: OcrOptions,
    on_pages: Callable[[int, int], None] | None,
) -> dict[str, Document | _Unreadable]:
    """Each scan's document (or why not), its missing pages recognised, counted in pages."""
    from qa.ingest.ocr import image_frames, recognise

    total = sum(s.todo for s in scans)
    done = 0
    if on_pages is not None:
        on_pages(0, total)
    out: dict[str, Document | _Unreadable] = {}
    for scan in scans:
        known = cache.get(scan.data)
        cached = len(known)
        texts = list(scan.texts)
        try:
            frames = None if scan.pdf else image_frames(scan.data, options)
            for i, text in enumerate(scan.texts):
                image = None if frames is None else next(frames)
                if text is not None:
                    continue
                if i not in known:
                    known[i] = recognise(
                        pdf_page(scan.data, i, options) if image is None else image
                    )
                texts[i] = known[i]
                done += 1
                if on_pages is not None:
                    on_pages(done, total)
        except UploadError as exc:
            out[scan.rel] = _Unreadable(str(exc))
            continue
        if len(known) > cached:
            cache.put(scan.data, known)
        cleaned = clean_pages([t or "" for t in texts])
        if not cleaned.text.strip():
            out[scan.rel] = _Unreadable("no text found in it by OCR")
            continue
        out[scan.rel] = make_document(scan.rel, scan.title, cleaned.text, scan.rel, cleaned.pages)
    return out


def corpus_files(folder: Path) -> Iterator[Path]:
    """Supported, non-hidden files under `folder`."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and name.lower().endswith(SUFFIXES):
                yield Path(root) / name


def _parse(
    path: Path, rel: str, data: bytes, ocr: OcrOptions
) -> tuple[list[Document], list[Skipped]] | _Scan:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _parse_jsonl(path, rel, _decode(data))
    if suffix in IMAGE_SUFFIXES:
        try:
            n = image_pages(path.name, data, ocr)
        except UploadError as exc:
            raise _Unreadable(str(exc)) from None
        return _Scan(rel, path.stem, data, (None,) * n, pdf=False)
    if suffix == ".pdf":
        parsed = _parse_pdf(path, rel, data, ocr)
        if isinstance(parsed, _Scan):
            return parsed
        title, text, pages = parsed
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


def _parse_pdf(
    path: Path, rel: str, data: bytes, ocr: OcrOptions
) -> tuple[str, str, tuple[int, ...]] | _Scan:
    """(title, cleaned text of the pages (qa.ingest.clean), start offset of each page), or the
    scan to recognise when pages with a picture have no usable text."""
    from pypdf import PdfReader

    # pypdf raises many exception types on damaged files; any of them means "unparsable".
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("encrypted PDF; save an unencrypted copy")
        page_texts = [(page.extract_text() or "").strip() for page in reader.pages]
        scanned = [
            i for i, p in enumerate(reader.pages) if _unusable(page_texts[i]) and _has_image(p)
        ]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except _Unreadable:
        raise
    except Exception as exc:
        raise _Unreadable(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    title = " ".join(str(meta_title).split()) or path.stem
    if scanned:
        try:
            require(f"{path.name} (pages without a text layer)")
        except UploadError as exc:
            if not clean_pages([t for t in page_texts if not _unusable(t)]).text.strip():
                raise _Unreadable(str(exc)) from None
            log.warning("%s: its scanned pages are left out: %s", path, exc)
            scanned = []
    if len(scanned) > ocr.max_pages:
        raise _Unreadable(
            f"{len(scanned)} scanned pages, over the limit of {ocr.max_pages} (setting "
            "ocr_max_pages); split the PDF, or raise ocr_max_pages"
        )
    if scanned:
        texts = tuple(None if i in scanned else t for i, t in enumerate(page_texts))
        return _Scan(rel, title, data, texts, pdf=True)
    cleaned = clean_pages(page_texts)
    if not cleaned.text.strip():
        raise _Unreadable("no text in the PDF: its pages hold neither text nor a picture to read")
    return title, cleaned.text, cleaned.pages


def _unusable(text: str) -> bool:
    """Whether a page's text layer is empty or garbage (mostly unmapped glyphs)."""
    chars = [c for c in text if not c.isspace()]
    if len(chars) < 3:
        return True
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in ("Co", "Cn", "Cc"))
    return bad > 0.3 * len(chars)


def _has_image(page: Any, depth: int = 0) -> bool:
    """Whether a PDF page (or form) draws an image: a scan, as opposed to a blank page."""
    try:
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if resources else None
        for ref in (xobjects.get_object() if xobjects is not None else {}).values():
            obj = ref.get_object()
            kind = obj.get("/Subtype")
            if kind == "/Image" or (kind == "/Form" and depth < 3 and _has_image(obj, depth + 1)):
                return True
    except Exception:  # a damaged resource dictionary: no scan to read, the text still counts
        return False
    return False
