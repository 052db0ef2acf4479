"""Clean up extracted text: PDF pages into paragraphs, HTML and DOCX text tidied.

pypdf gives one line per printed line, so a PDF's text arrives with words hyphenated across
line ends ("in-\\ntegrity"), paragraphs cut into lines, and the running headers, footers and
page numbers of every page in the middle of its sentences. `clean_pages` undoes that:

- running lines: a line among the first or last `EDGE_LINES` lines of a page whose shape
  (lower-cased, digits as `#`, so "Page 3 of 9" matches "Page 4 of 9") recurs at the edge of at
  least `RUNNING_SHARE` of the pages (and of `MIN_RUNNING_PAGES`) is dropped. The share is
  below a half on purpose: books and papers alternate their headers between odd and even pages.
- wrapped lines: a line at least `FULL_SHARE` of the body width (the 90th percentile of line
  lengths) ran to the right margin, so the next line continues its paragraph and the two are
  joined with a space. A shorter line ended where its text ended: after a sentence end it
  closes a paragraph (blank line), otherwise (a heading, a list or table row) it keeps its
  line break. Blank lines the extractor gives are paragraph breaks too.
- hyphens: a full line ending in letter + hyphen followed by a lower-case word is one word cut
  in two. Whether the hyphen belongs to the word is decided by the document itself: "multi-core"
  stays hyphenated when the document writes "multi-core" more often than "multicore" elsewhere;
  a hyphen after a word that already has one ("state-of-the-") stays; when the document has
  neither form, the hyphen stays if both halves are words it uses on their own ("read-mostly")
  and otherwise, as in typeset prose, was the typesetter's and goes ("in-tegrity"). Before a
  capital or a digit ("COVID-\\n19") the hyphen stays and the parts are joined without a space.
  A soft hyphen (U+00AD) at a line end always joins. Halves of cut words are not counted.
- characters: ligatures (ﬁ, ﬂ, ...) are spelled out, zero-width characters and soft hyphens
  removed, runs of spaces collapsed, lines stripped.

Reading order is the extractor's: lines are never moved, only joined or dropped. The cleaned
text is the document text; `CleanText.pages` gives where each page's first kept character
landed in it, so page numbers keep following the text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Lines at the top and at the bottom of a page where running headers and footers live.
EDGE_LINES = 3
# A line shape at the edge of at least this share of pages (and this many) is a running line.
RUNNING_SHARE = 0.4
MIN_RUNNING_PAGES = 3
# A line at least this share of the body width reached the right margin (it wraps).
FULL_SHARE = 0.7
# Lines narrower than this (in characters) are no prose column: nothing is unwrapped.
MIN_PROSE_WIDTH = 40

_LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_SOFT_HYPHEN = "\u00ad"
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_DIGITS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[.!?:;][\"'”’)\]]*$")
_BULLET = re.compile(r"[•◦▪‣*–-]\s|\(?\d{1,2}[.)]\s")
_LAST_WORD = re.compile(r"[^\W\d_][\w-]*$")
_FIRST_WORD = re.compile(r"[^\W\d_]+")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class CleanText:
    """Cleaned text and the offset in it where each page starts (a page with no text left
    starts where the next one does)."""

    text: str
    pages: tuple[int, ...]


def tidy_line(line: str) -> str:
    """One PDF line with ligatures spelled out, invisible characters gone, spaces collapsed.

    A soft hyphen stays at the end (a word surely cut at the line end); elsewhere it goes.
    """
    line = _chars(line)
    soft = _SOFT_HYPHEN if line.endswith(_SOFT_HYPHEN) else ""
    return line.replace(_SOFT_HYPHEN, "") + soft


def tidy(text: str) -> str:
    """Text whose line breaks are meant (HTML, DOCX) with every line tidied, at most one
    blank line in a row, and no blank lines at either end."""
    lines = (_chars(line).replace(_SOFT_HYPHEN, "") for line in _newlines(text).split("\n"))
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def _chars(line: str) -> str:
    return _SPACES.sub(" ", _INVISIBLE.sub("", line.translate(_LIGATURES))).strip()


def clean_pages(pages: Sequence[str]) -> CleanText:
    """The pages' text as paragraphs, without running headers and footers (see module doc)."""
    # Blank lines at a page's top or bottom are no paragraph break: text may run on.
    lines = [_trim([tidy_line(x) for x in _newlines(p).split("\n")]) for p in pages]
    edges = [_edge_indexes(page_lines) for page_lines in lines]
    running = _running_shapes(lines, edges)
    body = [
        (page, line)
        for page, page_lines in enumerate(lines)
        for i, line in enumerate(page_lines)
        if not (i in edges[page] and _shape(line) in running)
    ]
    lengths = sorted(len(line) for _, line in body if line)
    width = lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0
    joiner = _Joiner(
        full=FULL_SHARE * width if width >= MIN_PROSE_WIDTH else math.inf,
        words=_word_counts(line for _, line in body),
    )
    return _assemble(body, joiner, len(pages))


def _assemble(body: Sequence[tuple[int, str]], joiner: _Joiner, n_pages: int) -> CleanText:
    """The body lines joined as `joiner` says, with the offset where each page starts."""
    out: list[str] = []
    size = 0
    starts: list[int | None] = [None] * n_pages
    prev = ""
    paragraph_break = False
    for page, line in body:
        if not line:
            paragraph_break = bool(prev)
            continue
        sep = ""
        if prev:
            drop_hyphen, sep = (
                (prev.endswith(_SOFT_HYPHEN), "\n\n")
                if paragraph_break
                else joiner.join(prev, line)
            )
            if drop_hyphen:
                out[-1] = out[-1][:-1]
                size -= 1
        out.append(sep)
        size += len(sep)
        if starts[page] is None:
            starts[page] = size
        out.append(line)
        size += len(line)
        prev, paragraph_break = line, False
    if prev.endswith(_SOFT_HYPHEN):
        out[-1] = out[-1][:-1]
        size -= 1
    return CleanText("".join(out), _fill_starts(starts, size))


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _trim(lines: list[str]) -> list[str]:
    filled = [i for i, line in enumerate(lines) if line]
    return lines[filled[0] : filled[-1] + 1] if filled else []


def _word_counts(lines: Iterable[str]) -> Counter[str]:
    """How often the document uses each word, leaving out the halves of words cut at line ends."""
    counts: Counter[str] = Counter()
    cut_before = False
    for line in lines:
        words = _WORD.findall(line)
        cut_after = _is_cut(line)
        counts.update(w.lower() for w in words[int(cut_before) : len(words) - int(cut_after)])
        cut_before = cut_after
    return counts


def _is_cut(line: str) -> bool:
    return len(line) >= 2 and line[-1] in "-\u2010\u00ad" and line[-2].isalpha()


def _shape(line: str) -> str:
    return _DIGITS.sub("#", line.lower())


def _edge_indexes(page_lines: Sequence[str]) -> set[int]:
    filled = [i for i, line in enumerate(page_lines) if line]
    return set(filled[:EDGE_LINES] + filled[-EDGE_LINES:])


def _running_shapes(pages: Sequence[Sequence[str]], edges: Sequence[set[int]]) -> set[str]:
    """Shapes of the lines that recur at the top or bottom of most pages."""
    counts: Counter[str] = Counter()
    for page_lines, at_edge in zip(pages, edges, strict=True):
        counts.update({_shape(page_lines[i]) for i in at_edge})
    need = max(MIN_RUNNING_PAGES, math.ceil(RUNNING_SHARE * len(pages)))
    return {shape for shape, n in counts.items() if n >= need}


@dataclass(frozen=True)
class _Joiner:
    """Decides what goes between two consecutive lines of body text."""

    full: float
    words: Counter[str]

    def join(self, a: str, b: str) -> tuple[bool, str]:
        """(drop the hyphen ending `a`, separator) for line `a` followed by line `b`."""
        if a.endswith(_SOFT_HYPHEN):
            return True, ""
        if _BULLET.match(b):
            return False, "\n"
        if len(a) < self.full:
            return False, "\n\n" if _SENTENCE_END.search(a) else "\n"
        if len(b) < self.full and not _SENTENCE_END.search(b) and _SENTENCE_END.search(a):
            return False, "\n\n"  # a short line that ends no sentence: a heading
        if _is_cut(a):
            return self._hyphen(a, b), ""
        return False, " "

    def _hyphen(self, a: str, b: str) -> bool:
        """Whether the hyphen ending `a` was only the typesetter's (so it goes)."""
        left, right = _LAST_WORD.search(a), _FIRST_WORD.match(b)
        if left is None or right is None or not b[0].islower():
            return False
        stem = left.group()[:-1]
        if "-" in stem:
            return False
        head, tail = stem.lower(), right.group().lower()
        joined, kept = self.words[head + tail], self.words[f"{head}-{tail}"]
        if joined or kept:
            return joined >= kept
        # Neither form elsewhere: two words of their own ("read-mostly") were a compound.
        return not (self.words[head] and self.words[tail])


def _fill_starts(starts: list[int | None], size: int) -> tuple[int, ...]:
    filled: list[int] = []
    following = size
    for start in reversed(starts):
        following = following if start is None else start
        filled.append(following)
    return tuple(reversed(filled))
