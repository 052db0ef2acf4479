"""Read Word .docx files: the paragraphs of word/document.xml, with the standard library only.

A .docx is a zip of XML parts. The body text lives in `word/document.xml`: `w:p` paragraphs of
`w:r` runs holding `w:t` text, `w:tab` and `w:br`. Paragraphs become blank-line separated
paragraphs, line breaks stay line breaks. Running headers and footers and footnotes live in
other parts and are not read; deleted tracked changes (`w:delText`), field codes (`w:instrText`)
and the fallback copy of text boxes (`mc:Fallback`, a duplicate of `mc:Choice`) are skipped.
The title is the document property `dc:title`, else a short first paragraph.

Hostile files are refused before anything is unpacked: a zip whose parts would unpack to more
than `MAX_UNPACKED_BYTES`, with more than `MAX_PARTS` parts, or with a large part compressed
more than `MAX_RATIO` to 1 (a zip bomb), and XML that declares a DTD or entities (billion
laughs, external entities; Word never writes them). `DocxError`'s message is the reason.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from xml.parsers import expat

from qa.ingest.clean import tidy

# Together, the parts of a .docx may unpack to at most this many bytes.
MAX_UNPACKED_BYTES = 200 * 2**20
MAX_PARTS = 10_000
# A part over `_RATIO_FLOOR` bytes compressed more than this is a bomb: Word's XML compresses
# about 5-20 to 1; zip bombs compress hundreds to thousands to 1.
MAX_RATIO = 100
_RATIO_FLOOR = 2**20
# A first paragraph longer than this is text, not a title.
_MAX_TITLE_CHARS = 200

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "http://schemas.openxmlformats.org/markup-compatibility/2006}"
_DC = "http://purl.org/dc/elements/1.1/}"
_BODY = "word/document.xml"
_CORE = "docProps/core.xml"


class DocxError(ValueError):
    """A .docx that cannot be read; the message says why."""


def read_docx(data: bytes, *, default_title: str) -> tuple[str, str]:
    """(title, text) of a .docx; DocxError when it is no .docx, damaged or a zip bomb."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DocxError(
            f"not a .docx: not a zip archive ({exc}); old .doc and password-protected files "
            "cannot be read, save it as .docx"
        ) from None
    with archive:
        _refuse_bombs(archive)
        names = set(archive.namelist())
        if _BODY not in names:
            raise DocxError(f"not a Word document: the zip has no {_BODY}")
        paragraphs = _Body().parse(_read(archive, _BODY))
        title = _core_title(_read(archive, _CORE)) if _CORE in names else ""
    text = tidy("\n\n".join(paragraphs))
    if not title:
        first = text.split("\n", 1)[0] if text else ""
        title = first if len(first) <= _MAX_TITLE_CHARS else ""
    return title or default_title, text


def _refuse_bombs(archive: zipfile.ZipFile) -> None:
    parts = archive.infolist()
    if len(parts) > MAX_PARTS:
        raise DocxError(f"refused as a zip bomb: {len(parts)} parts (limit {MAX_PARTS})")
    unpacked = sum(p.file_size for p in parts)
    if unpacked > MAX_UNPACKED_BYTES:
        raise DocxError(
            f"refused as a zip bomb: it would unpack to {unpacked} bytes "
            f"(limit {MAX_UNPACKED_BYTES})"
        )
    for part in parts:
        ratio = part.file_size / max(part.compress_size, 1)
        if part.file_size > _RATIO_FLOOR and ratio > MAX_RATIO:
            raise DocxError(
                f"refused as a zip bomb: {part.filename} is compressed {ratio:.0f} to 1 "
                f"(limit {MAX_RATIO} to 1)"
            )


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    """A part's bytes; zipfile stops at the declared size, checked above, and checks the CRC."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise DocxError(f"damaged .docx: cannot unpack {name} ({exc})") from None


def _parser() -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator="}")

    def refuse(*_: object) -> None:
        raise DocxError("refused: its XML declares a DTD or entities, which Word never writes")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    return parser


def _parse(parser: expat.XMLParserType, data: bytes, name: str) -> None:
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise DocxError(f"damaged .docx: {name} is not well-formed XML ({exc})") from None


class _Body:
    """Collects the paragraphs of word/document.xml while expat streams through it."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self._open: list[list[str]] = []  # text of the paragraphs being read (they can nest)
        self._in_text = False
        self._skip = 0  # depth inside mc:Fallback

    def parse(self, data: bytes) -> list[str]:
        parser = _parser()
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        _parse(parser, data, _BODY)
        return [p for p in self.paragraphs if p.strip()]

    def _start(self, name: str, _attrs: dict[str, str]) -> None:
        if name == f"{_MC}Fallback" or self._skip:
            self._skip += 1
        elif name == f"{_W}p":
            self._open.append([])
        elif self._open:
            self._in_text = name == f"{_W}t"
            piece = {f"{_W}tab": "\t", f"{_W}br": "\n", f"{_W}cr": "\n"}.get(name)
            piece = "-" if name == f"{_W}noBreakHyphen" else piece
            if piece:
                self._open[-1].append(piece)

    def _end(self, name: str) -> None:
        if self._skip:
            self._skip -= 1
        elif name == f"{_W}p" and self._open:
            self.paragraphs.append("".join(self._open.pop()))
        elif name == f"{_W}t":
            self._in_text = False

    def _chars(self, text: str) -> None:
        if self._in_text and self._open and not self._skip:
            self._open[-1].append(text)


def _core_title(data: bytes) -> str:
    """The dc:title of docProps/core.xml, "" when there is none."""
    found: list[str] = []
    inside = [False]
    parser = _parser()

    def start(name: str, _attrs: dict[str, str]) -> None:
        inside[0] = name == f"{_DC}title"

    def end(_name: str) -> None:
        inside[0] = False

    def chars(text: str) -> None:
        if inside[0]:
            found.append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    _parse(parser, data, _CORE)
    return " ".join("".join(found).split())
