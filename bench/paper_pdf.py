"""Typeset PEP 703 (bench/data/pep-0703.rst) as a paper-like PDF, and know where each word went.

The PEP is placed in the public domain or under CC0-1.0-Universal (its last section says so),
from github.com/python/peps, peps/pep-0703.rst. The reStructuredText is reduced to headings,
paragraphs, block quotes, list items and code lines (markup and link targets dropped), then set
in one column of Helvetica: lines broken at `COLUMN` points with approximate Helvetica widths,
a word that does not fit hyphenated when it is long enough (after a hyphen if it has one), a
running header that alternates between even and odd pages, and the page number at the bottom.
`Paper.flat` is the text the blocks hold, whitespace collapsed; `Paper.pages_of(phrase)` gives
the 1-based pages the words of a phrase of it were printed on: the gold pages of a question.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pdf_writer import Line, pdf_bytes  # noqa: E402

SOURCE = ROOT / "bench" / "data" / "pep-0703.rst"
TITLE = "Making the Global Interpreter Lock Optional in CPython"
HEADERS = (f"PEP 703: {TITLE}", "S. Gross, Python Enhancement Proposals, 2023")
COLUMN = 400.0  # points
BOTTOM = 80.0  # the lowest baseline for body text
# Helvetica advance widths in 1/1000 em, by character (others: 556).
_WIDTHS = {
    **dict.fromkeys("ijl'", 222),
    **dict.fromkeys(" .,:;!ftI/[]\\", 278),
    **dict.fromkeys('r()-"`', 333),
    **dict.fromkeys("ckszvxyJ?", 500),
    **dict.fromkeys("+<>=~", 584),
    **dict.fromkeys("TZF", 611),
    **dict.fromkeys("ABEKPSVXY&", 667),
    **dict.fromkeys("CDHNRUw", 722),
    **dict.fromkeys("GOQ", 778),
    **dict.fromkeys("mM", 833),
    "W": 944,
    "%": 889,
    "@": 1015,
}


@dataclass(frozen=True)
class Block:
    kind: str  # "heading", "para", "quote", "item", "code"
    text: str


@dataclass
class Paper:
    """The typeset pages and, for each word of `flat`, its offset and page."""

    pages: list[list[str | Line]] = field(default_factory=list)
    title: str = TITLE
    flat: str = ""
    words: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, page)

    def pdf(self) -> bytes:
        return pdf_bytes(self.pages, title=TITLE)

    def pages_of(self, phrase: str) -> set[int]:
        """The pages the words of `phrase` (a substring of `flat`) were printed on."""
        start = self.flat.find(phrase)
        if start < 0 or self.flat.find(phrase, start + 1) >= 0:
            raise ValueError(f"phrase must occur once in the paper: {phrase!r}")
        end = start + len(phrase)
        return {page for s, e, page in self.words if s < end and e > start}


def blocks(rst: str) -> list[Block]:
    """Headings, paragraphs, quotes, list items and code lines of the PEP's reStructuredText."""
    lines = rst.split("\n")
    out: list[Block] = []
    i = lines.index("Abstract")
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"([=\-~^'\"])\1{2,}", nxt) and len(nxt) >= len(line):
            out.append(Block("heading", line.strip()))
            i += 2
            continue
        if not line.strip() or re.match(r"\.\. _|\.\. (note|canonical-doc)", line):
            i += 1
            continue
        is_code = re.match(r"\.\. (code-block|list-table)", line) or line.rstrip().endswith("::")
        if line.startswith(".. ") and not is_code and not line.startswith(".. ["):
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and lines[j].strip() and not _starts_item(lines[j], indent):
            j += 1
        text = " ".join(x.strip() for x in lines[i:j])
        if line.startswith(".. ["):
            text = re.sub(r"^\.\. \[#[^\]]*\]\s*", "", text)
        if is_code:
            if not line.startswith(".."):
                out.append(Block("para", _inline(text.removesuffix("::") + ":")))
            i = j
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                if lines[i].strip() and not lines[i].strip().startswith(":"):
                    out.append(Block("code", lines[i].strip().lstrip("*- ").strip()))
                i += 1
            continue
        kind = "item" if _starts_item(line, -1) else ("quote" if indent else "para")
        out.append(Block(kind, _inline(text)))
        i = j
    return [b for b in out if b.text]


def _starts_item(line: str, indent: int) -> bool:
    stripped = line.lstrip()
    return len(line) - len(stripped) > indent and bool(re.match(r"[*\-] |\d+\. |#\. ", stripped))


def _inline(text: str) -> str:
    text = re.sub(r"\[#[^\]]*\]_", "", text)
    text = re.sub(r":\w+:`([^`<]*?)\s*(<[^>]*>)?`", lambda m: m.group(1), text)
    text = re.sub(r"`([^`<]*?)\s*<[^>]*>`_+", r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`]*)`_*", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*", lambda m: m.group(1) or m.group(2), text)
    text = text.replace("---", "-").replace("\u2014", "-")
    return " ".join(text.encode("cp1252", "replace").decode("cp1252").split())


def width(text: str, size: float) -> float:
    return sum(_WIDTHS.get(c, 556) for c in text) * size / 1000


def typeset(items: list[Block]) -> Paper:
    """Lay the blocks out on pages; record every word's page."""
    paper = Paper()
    state = _Cursor(paper)
    state.new_page()
    state.put(Line(TITLE, font="F2", size=14), [], 20)
    for block in items:
        start = len(paper.flat) + (2 if paper.flat else 0)
        paper.flat += ("\n\n" if paper.flat else "") + block.text
        spans = [(start + m.start(), start + m.end()) for m in re.finditer(r"\S+", block.text)]
        if block.kind == "code":
            state.put(Line(block.text[:70], font="F3", size=9, indent=20), spans, 2)
            continue
        font, size, indent, gap = {
            "heading": ("F2", 12, 0, 10),
            "para": ("F1", 10, 0, 6),
            "quote": ("F1", 10, 24, 4),
            "item": ("F1", 10, 12, 2),
        }[block.kind]
        for k, (line, line_spans) in enumerate(_wrap(block.text, spans, COLUMN - indent, size)):
            state.put(Line(line, font=font, size=size, indent=indent), line_spans, gap * (k == 0))
    state.finish()
    return paper


@dataclass
class _Cursor:
    paper: Paper
    y: float = 0

    def new_page(self) -> None:
        n = len(self.paper.pages) + 1
        page: list[str | Line] = []
        if n > 1:
            page.append(Line(HEADERS[n % 2], size=8, y=760))
        self.paper.pages.append(page)
        self.y = 740

    def put(self, line: Line, spans: list[tuple[int, int]], gap: float) -> None:
        if self.y - gap - 12 < BOTTOM:
            self.finish_page()
            self.new_page()
            gap = 0
        self.y -= gap + 12
        self.paper.pages[-1].append(Line(line.text, line.font, line.size, line.indent, y=self.y))
        page = len(self.paper.pages)
        self.paper.words.extend((s, e, page) for s, e in spans)

    def finish_page(self) -> None:
        self.paper.pages[-1].append(Line(str(len(self.paper.pages)), size=9, indent=190, y=50))

    def finish(self) -> None:
        self.finish_page()


def _wrap(
    text: str, spans: list[tuple[int, int]], room: float, size: float
) -> list[tuple[str, list[tuple[int, int]]]]:
    """Lines of at most `room` points; a long word that does not fit is hyphenated."""
    lines: list[tuple[str, list[tuple[int, int]]]] = []
    words = text.split()
    current: list[str] = []
    current_spans: list[tuple[int, int]] = []
    for word, span in zip(words, spans, strict=True):
        candidate = " ".join([*current, word])
        if width(candidate, size) <= room:
            current.append(word)
            current_spans.append(span)
            continue
        head, tail = _hyphenate(word, room - width(" ".join([*current, ""]), size), size)
        if head:
            current.append(head)
            current_spans.append(span)
        lines.append((" ".join(current), current_spans))
        current, current_spans = ([tail], [span]) if tail else ([], [])
    if current:
        lines.append((" ".join(current), current_spans))
    return lines


def _hyphenate(word: str, room: float, size: float) -> tuple[str, str]:
    """(head ending in "-", tail) of a word cut to fit `room`, or ("", word) if it cannot be."""
    if "-" in word[1:-1]:
        cuts = [i + 1 for i in range(1, len(word) - 1) if word[i] == "-" and word[i - 1].isalpha()]
        fits = [cut for cut in cuts if width(word[:cut], size) <= room]
        return (word[: fits[-1]], word[fits[-1] :]) if fits else ("", word)
    letters = re.match(r"[A-Za-z]+", word)
    if letters is None or letters.end() < 7:
        return "", word
    for cut in range(letters.end() - 3, 2, -1):
        if width(word[:cut] + "-", size) <= room:
            return word[:cut] + "-", word[cut:]
    return "", word


def paper() -> Paper:
    return typeset(blocks(SOURCE.read_text(encoding="utf-8")))
