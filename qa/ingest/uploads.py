"""Files added to and removed from the corpus folder while a server runs.

The corpus folder stays the source of truth: an upload is checked (its type judged by its
content, its text readable as `qa index` reads it), given a safe name inside the folder, and
written to a hidden temporary file there that is then linked into place, so `qa index` never
sees half a file and an existing file is never overwritten (a clash becomes `name (2).pdf`).
Removing a document removes its file. The index follows by an ordinary `build_index`.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qa.errors import DocumentNotFoundError, FileTooLargeError, UnsupportedFileError, UploadError
from qa.ingest.ocr import IMAGE_SUFFIXES, OcrOptions
from qa.ingest.readers import corpus_files, read_file

# Type name -> the file name endings it covers (the first is used when a name lacks one).
TYPES = {
    "txt": (".txt",),
    "md": (".md",),
    "html": (".html", ".htm"),
    "pdf": (".pdf",),
    "docx": (".docx",),
    "image": IMAGE_SUFFIXES,
}
_MAX_NAME_CHARS = 120
# Characters kept in a file name; anything else (slashes, control characters, quotes) becomes _.
_UNSAFE = re.compile(r"[^\w .,()\[\]{}+\-&'@!~=]")
_ZIP_MAGIC = b"PK\x03\x04"
_PDF_MAGIC = b"%PDF-"
# What each image ending starts with (WebP: RIFF....WEBP; TIFF: either byte order).
_IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".tif": (b"II*\x00", b"MM\x00*"),
    ".tiff": (b"II*\x00", b"MM\x00*"),
    ".webp": (b"RIFF",),
}


@dataclass(frozen=True)
class Upload:
    """A checked upload: its safe name, its type, and its bytes."""

    name: str
    kind: str
    data: bytes


def check_upload(
    filename: str,
    data: bytes,
    *,
    allowed: Sequence[str],
    max_bytes: int,
    ocr: OcrOptions | None = None,
) -> Upload:
    """The upload, or the UploadError (415, 413, 422) that says what is wrong and what to do.

    An image or a scanned PDF is checked against the `ocr` limits from its header and needs the
    OCR extra; it is recognised later, by the job that indexes it.
    """
    name = safe_name(filename)
    if len(data) > max_bytes:
        raise FileTooLargeError(
            f"{name} is {len(data)} bytes, over the limit of {max_bytes} bytes (setting "
            "max_upload_bytes). Split it, or raise max_upload_bytes on the server."
        )
    if not data:
        raise UploadError(f"{name} is empty (0 bytes). Choose the file again, with its content.")
    kind = type_of_name(name)
    if kind is None or kind not in allowed:
        raise UnsupportedFileError(
            f"{name}: unsupported type. qa takes {_listed(allowed)} files; convert it to one "
            "of them."
        )
    _check_content(name, kind, data)
    # The reader's own checks: text to index, not a zip bomb, UTF-8, an image within limits.
    read_file(name, data, ocr=ocr)
    return Upload(name=name, kind=kind, data=data)


def type_of_name(name: str) -> str | None:
    """The type (`pdf`, `docx`, ...) a file name's ending says, or None for another one."""
    suffix = Path(name).suffix.lower()
    return next((kind for kind, ends in TYPES.items() if suffix in ends), None)


def _listed(allowed: Sequence[str]) -> str:
    return ", ".join(e for kind in allowed for e in TYPES[kind])


def _check_content(name: str, kind: str, data: bytes) -> None:
    """Refuse bytes that are not what the name says (judged by content, not the ending)."""
    if kind == "pdf":
        if not data[:1024].lstrip().startswith(_PDF_MAGIC):
            raise UnsupportedFileError(
                f"{name} is not a PDF: it does not start with %PDF-. Upload the real PDF, or "
                "give the file the ending of what it is."
            )
        return
    if kind == "docx":
        if not data.startswith(_ZIP_MAGIC):
            raise UnsupportedFileError(
                f"{name} is not a .docx (a .docx is a zip archive). Old .doc files cannot be "
                "read: save it as .docx in Word or LibreOffice."
            )
        return
    if kind == "image":
        suffix = Path(name).suffix.lower()
        if not data.startswith(_IMAGE_MAGIC[suffix]) or (
            suffix == ".webp" and data[8:12] != b"WEBP"
        ):
            raise UnsupportedFileError(
                f"{name} is not a {suffix} image (its first bytes say otherwise). Upload the "
                "real image, or give the file the ending of what it is."
            )
        return
    if data.startswith((_PDF_MAGIC, _ZIP_MAGIC)) or b"\x00" in data[:8192]:
        raise UnsupportedFileError(
            f"{name} holds binary data, not text. Give it the ending of what it is (.pdf, "
            ".docx), or save it as UTF-8 text."
        )


def safe_name(filename: str) -> str:
    """A plain file name for the corpus folder: no folders, no `..`, not hidden, not too long.

    >>> safe_name("../../etc/passwd.txt")
    'passwd.txt'
    >>> safe_name("  .hidden notes.md")
    'hidden notes.md'
    """
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", filename))[-1]
    base = _UNSAFE.sub("_", "".join(ch for ch in base if ch.isprintable()))
    base = " ".join(base.split()).lstrip(".- ")
    stem, suffix = os.path.splitext(base)
    if len(suffix) > 10:  # not an ending, just a dot in the name
        stem, suffix = base, ""
    stem = stem.rstrip(". ")[: _MAX_NAME_CHARS - len(suffix)] or "upload"
    return stem + suffix.lower()


def save_upload(corpus_dir: Path, upload: Upload) -> str:
    """Write the upload into the corpus folder under a free name; its document id (the name).

    Written to a hidden temporary file in the same folder (loaders skip hidden files), synced,
    then hard-linked to its final name: a link never replaces an existing file, so two uploads
    racing for one name both survive, one as `name (2).ext`.
    """
    corpus_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=corpus_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(upload.data)
            out.flush()
            os.fsync(out.fileno())
        stem, suffix = os.path.splitext(upload.name)
        for n in range(1, 10_000):
            name = upload.name if n == 1 else f"{stem} ({n}){suffix}"
            try:
                os.link(tmp, corpus_dir / name)
            except FileExistsError:
                continue
            return name
        raise UploadError(f"{upload.name}: too many files of that name. Rename it and retry.")
    finally:
        tmp.unlink(missing_ok=True)


def corpus_file(corpus_dir: Path, source: str) -> Path:
    """The file `source` (a document's source path) inside the corpus folder, never outside."""
    root = corpus_dir.resolve()
    path = (root / source).resolve()
    if not path.is_relative_to(root) or path == root:
        raise DocumentNotFoundError(f"No document {source!r} in the corpus folder {corpus_dir}/.")
    return path


def remove_file(corpus_dir: Path, source: str) -> None:
    """Delete a document's file from the corpus folder (DocumentNotFoundError if it is gone,
    UploadError if it is the folder's last document)."""
    path = corpus_file(corpus_dir, source)
    if path.is_file() and not any(p.resolve() != path for p in corpus_files(corpus_dir)):
        # An index needs a document: removing the last one would fail its job and leave the
        # index serving a file the corpus folder no longer has.
        raise UploadError(
            f"{source!r} is the last document of the corpus folder {corpus_dir}/, and an index "
            "needs at least one: add another document first, then remove this one."
        )
    try:
        path.unlink()
    except FileNotFoundError:
        raise DocumentNotFoundError(
            f"No file {source!r} in the corpus folder {corpus_dir}/: it was removed already."
        ) from None
