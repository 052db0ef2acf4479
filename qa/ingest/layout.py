"""Recognised text boxes of one page, put back in reading order as the lines of a page.

An OCR model finds boxes of text anywhere on the page, in no useful order, sometimes cutting
one printed line into overlapping pieces. `page_text` turns them into what a PDF's text layer
would have given, so `qa.ingest.clean.clean_pages` can make paragraphs of them as it does for
text PDFs:

- columns: an upright strip of the page that (almost) no narrow box crosses, with at least
  `MIN_COLUMN_BOXES` boxes wholly on each side, is a gutter. A box crossing a gutter (a title
  over two columns) spans the page; spanning boxes cut the page into bands read top to bottom,
  and inside a band each column is read whole, left to right.
- lines: boxes of a column that overlap vertically by half the lower one's height are one
  line, read left to right; two pieces of a line that overlap lose the characters they share
  ("fox jumps over t" + "the lazy dog."). Pieces are joined by a space, or by nothing between
  two CJK characters (Chinese is written without spaces).
- paragraphs: a blank line goes before a line that starts below a gap taller than
  `PARAGRAPH_GAP` line heights, or that is indented by more than `INDENT` line heights (a
  first-line indent), and around spanning lines (headings).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# A vertical gap between two lines of a column taller than this many line heights ends a
# paragraph; so does a first-line indent of more than INDENT line heights.
PARAGRAPH_GAP = 0.8
INDENT = 1.2
# A gutter is at least this many line heights wide, with this many boxes wholly on each side.
GUTTER_WIDTH = 1.0
MIN_COLUMN_BOXES = 3
# A box wider than this share of the page's text spans columns: it does not hide a gutter.
WIDE = 0.6
# Pieces of one line overlapping by more than this many line heights share characters.
OVERLAP = 0.2
_MAX_SHARED_CHARS = 4


@dataclass(frozen=True)
class Box:
    """One recognised piece of text and its upright bounding box in pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class _Line:
    boxes: tuple[Box, ...]

    @property
    def x0(self) -> float:
        return min(b.x0 for b in self.boxes)

    @property
    def y0(self) -> float:
        return min(b.y0 for b in self.boxes)

    @property
    def y1(self) -> float:
        return max(b.y1 for b in self.boxes)

    @property
    def text(self) -> str:
        out = ""
        prev: Box | None = None
        for box in sorted(self.boxes, key=lambda b: b.x0):
            piece = box.text.strip()
            if prev is not None:
                shared = 0
                if prev.x1 - box.x0 > OVERLAP * min(prev.height, box.height):
                    shared = _shared(out, piece)
                    piece = piece[shared:]  # "over t" + "the": the t is one letter, no space
                out += "" if shared or (_cjk(out[-1:]) and _cjk(piece[:1])) else " "
            out += piece
            prev = box
        return out.strip()


def page_text(boxes: Sequence[Box]) -> str:
    """The page's lines in reading order, a blank line between paragraphs (see module doc)."""
    boxes = [b for b in boxes if b.text.strip() and b.x1 > b.x0 and b.y1 > b.y0]
    if not boxes:
        return ""
    height = statistics.median(b.height for b in boxes)
    gutters = _gutters(boxes, height)
    spanning = [b for b in boxes if any(b.x0 < g1 and b.x1 > g0 for g0, g1 in gutters)]
    columns: list[list[Box]] = [[] for _ in range(len(gutters) + 1)]
    for b in boxes:
        if b not in spanning:
            centre = (b.x0 + b.x1) / 2
            columns[sum(1 for g0, _ in gutters if centre > g0)].append(b)
    heads = _lines(spanning)
    cuts = [line.y0 for line in heads] + [float("inf")]
    blocks: list[tuple[list[_Line], bool]] = []  # (lines, spanning)
    top = float("-inf")
    for i, cut in enumerate(cuts):
        for column in columns:
            inside = [b for b in column if top <= (b.y0 + b.y1) / 2 < cut]
            if inside:
                blocks.append((_lines(inside), False))
        if i < len(heads):
            blocks.append(([heads[i]], True))
            top = heads[i].y1
    return _render(blocks, height)


def _render(blocks: Sequence[tuple[Sequence[_Line], bool]], height: float) -> str:
    out: list[str] = []
    after_heading = False
    for lines, spanning in blocks:
        left = min(line.x0 for line in lines)
        prev: _Line | None = None
        for line in lines:
            text = line.text
            if not text:
                continue
            gap = prev is not None and line.y0 - prev.y1 > PARAGRAPH_GAP * height
            indent = line.x0 - left > INDENT * height
            if out and (spanning or after_heading or gap or indent):
                out.append("")
            out.append(text)
            prev, after_heading = line, spanning
    return "\n".join(out)


def _lines(boxes: Sequence[Box]) -> list[_Line]:
    """Boxes grouped into lines (vertical overlap), top to bottom."""
    groups: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: (b.y0 + b.y1) / 2):
        for group in reversed(groups[-3:]):
            y0, y1 = min(b.y0 for b in group), max(b.y1 for b in group)
            shared = min(y1, box.y1) - max(y0, box.y0)
            if shared >= 0.5 * min(box.height, y1 - y0):
                group.append(box)
                break
        else:
            groups.append([box])
    return sorted((_Line(tuple(g)) for g in groups), key=lambda line: line.y0)


def _gutters(boxes: Sequence[Box], height: float) -> list[tuple[float, float]]:
    """Upright strips between columns: crossed by at most one box in twenty (or one), boxes
    wider than `WIDE` of the text not counted (titles over the columns)."""
    lo, hi = int(min(b.x0 for b in boxes)), int(max(b.x1 for b in boxes)) + 1
    cover = [0] * (hi - lo)
    for b in boxes:
        if b.x1 - b.x0 <= WIDE * (hi - lo):
            for x in range(int(b.x0) - lo, int(b.x1) - lo):
                cover[x] += 1
    allowed = max(1, len(boxes) // 20)
    gutters: list[tuple[float, float]] = []
    start: int | None = None
    for x, n in enumerate([*cover, len(boxes) + 1]):
        if n <= allowed and start is None:
            start = x
        elif n > allowed and start is not None:
            g0, g1 = start + lo, x + lo
            left = sum(1 for b in boxes if b.x1 <= g0)
            right = sum(1 for b in boxes if b.x0 >= g1)
            if (
                g1 - g0 >= GUTTER_WIDTH * height
                and left >= MIN_COLUMN_BOXES
                and right >= MIN_COLUMN_BOXES
            ):
                gutters.append((g0, g1))
            start = None
    return gutters


def _shared(before: str, piece: str) -> int:
    """How many first characters of `piece` repeat the end of `before` (overlapping boxes)."""
    for n in range(min(_MAX_SHARED_CHARS, len(piece), len(before)), 0, -1):
        if before.endswith(piece[:n]):
            return n
    return 0


def _cjk(ch: str) -> bool:
    return bool(ch) and (
        "\u3000" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef"
    )
