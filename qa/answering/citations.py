"""Citation helpers shared by every answerer: spans, quotes, `[n]` markers and support checks.

The contract: a Citation's `quote` is `document.text[start:end]`. A chunk's text is
`document.text[chunk.start:chunk.end]`, so an offset inside a passage maps to the document by
adding `chunk.start` (`citation_for`).

    >>> [s.text for s in split_sentences("It rained. Then; on Monday, it stopped;\\n- Done")]
    ['It rained.', 'Then', 'on Monday, it stopped', '- Done']
    >>> locate("on  MONDAY", "It stopped on Monday.")
    (11, 20)
    >>> [(c.text, c.ns) for c in split_claims("Paris is big [1]. It is old [2][3].")]
    [('Paris is big', (1,)), ('It is old', (2, 3))]

Public API: `Span`, `split_sentences`, `locate`, `content_terms`, `support_score`,
`find_support`, `citation_for`, `quote_citation`, `Claim`, `split_claims`, `MARKER`.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from qa.types import Citation, Document, Passage

MARKER = re.compile(r"\[(\d{1,3})\]")

# A sentence ends at . ! ? (plus closing quotes/brackets) before whitespace, at a ';' before
# whitespace (the demo article lists events as "On <date>, ...;" lines), or at a line break.
_BOUNDARY = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+|;\s+|;$|\s*\n\s*")
_ABBREVIATION_WORDS = (
    "mr mrs ms dr prof st jr sr vs etc e.g i.e no co inc ltd corp dept gen col lt sgt rev fig "
    "approx est jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k a.d b.c"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
STOPWORDS = frozenset(
    """a an the and or but if of at by for with about against between into through during before
    after above below to from up down in out on off over under again further then once here there
    when where why how all any both each few more most other some such no nor not only own same so
    than too very s t can will just don should now is are was were be been being have has had
    having do does did doing i me my we our you your he him his she her it its they them their
    what which who whom whose this that these those am would could also as per s's
    many much one did get got made make take""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Span:
    """A piece of some text: `source[start:end] == text`."""

    text: str
    start: int
    end: int


@functools.lru_cache(maxsize=1 << 10)  # the answerer splits the same windows per question
def split_sentences(text: str) -> tuple[Span, ...]:
    """Sentences (and ';'-separated list items, and lines) of `text` with exact char offsets.

    Leading/trailing whitespace and a trailing ';' are left out of each span; empty pieces
    are dropped. Common abbreviations ("Mr.", "U.S.", "Jan.") and initials ("J. Smith") do
    not end a sentence.
    """
    spans: list[Span] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if "\n" not in m.group() and _is_abbreviation(text, m.start()):
            continue
        if m.group().startswith(";") and _open_brackets(text, start, m.start()):
            continue  # "The Normans (Norman: Nourmands; French: Normands) were ..." is one
        _append(spans, text, start, m.start())
        start = m.end()
    _append(spans, text, start, len(text))
    return tuple(spans)


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the '.' just before `end` closes an abbreviation or an initial, not a sentence."""
    if text[end - 1 : end] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)\.$", text[max(0, end - 12) : end])
    if word is None:
        return False
    token = word.group(1)
    return (len(token) == 1 and token.isupper()) or token.lower() in _ABBREVIATIONS


def _open_brackets(text: str, start: int, end: int) -> bool:
    piece = text[start:end]
    return piece.count("(") > piece.count(")")


def _append(spans: list[Span], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip().rstrip(";").rstrip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    spans.append(Span(stripped, start + lead, start + lead + len(stripped)))


def locate(quote: str, text: str) -> tuple[int, int] | None:
    """Char offsets of `quote` in `text`: exact first, then ignoring case, spacing and quote style.

    Returns None when the quote is not in the text (a paraphrase is not a quote).
    """
    quote = quote.strip()
    if not quote:
        return None
    i = text.find(quote)
    if i >= 0:
        return i, i + len(quote)
    norm_text, index = _normalise_with_index(text)
    norm_quote, _ = _normalise_with_index(quote)
    j = norm_text.find(norm_quote)
    if j < 0 or not norm_quote:
        return None
    return index[j], index[j + len(norm_quote) - 1] + 1


_QUOTE_CHARS = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})


def _normalise_with_index(text: str) -> tuple[str, list[int]]:
    """Lower-cased text with runs of whitespace collapsed, and each char's original offset."""
    out: list[str] = []
    index: list[int] = []
    prev_space = True
    for i, ch in enumerate(text.translate(_QUOTE_CHARS)):
        if ch.isspace():
            if prev_space:
                continue
            ch = " "
            prev_space = True
        else:
            prev_space = False
        out.append(ch.lower())
        index.append(i)
    while out and out[-1] == " ":
        out.pop()
        index.pop()
    return "".join(out), index


# Memoised: the answerer stems every word of every retrieved sentence for every question,
# and the same words and sentences come back (uncached, stemming is a large share of an /ask).
# Bounded, so a server's memory stays flat whatever it is asked.
@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A small deterministic suffix stripper: 'issued'/'issue', 'policies'/'policy' match."""
    w = word.lower()
    if w.endswith(("'s", "’s")):
        w = w[:-2]  # "Kunming's" is about Kunming
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix, repl in (
        ("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""),
        ("ly", ""), ("ment", ""), ("ation", ""), ("ness", ""),
    ):  # fmt: skip
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: len(w) - len(suffix)] + repl
            break
    if w.endswith("e") and len(w) > 4:
        w = w[:-1]
    return w


def content_terms(text: str) -> list[str]:
    """Stemmed, lower-cased words of `text` minus stopwords, in order (duplicates kept)."""
    return list(_content_terms(text))


@functools.lru_cache(maxsize=1 << 13)
def _content_terms(text: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in _WORD.findall(text) if w.lower() not in STOPWORDS)


def support_score(claim: str, evidence: str) -> float:
    """Share (0..1) of the claim's distinct content terms that occur in the evidence."""
    terms = set(content_terms(MARKER.sub("", claim)))
    if not terms:
        return 0.0
    return len(terms & set(content_terms(evidence))) / len(terms)


def find_support(claim: str, text: str, *, min_score: float = 0.5) -> tuple[Span, float] | None:
    """The sentence of `text` that best supports `claim`, with its support score.

    An exact (normalised) quote wins with score 1.0; otherwise the sentence, or pair of
    adjacent sentences, covering most of the claim's content terms. None below `min_score`.
    """
    claim = MARKER.sub("", claim).strip()
    where = locate(claim, text)
    if where is not None:
        return Span(text[where[0] : where[1]], *where), 1.0
    sentences = split_sentences(text)
    candidates = list(sentences) + [
        Span(text[a.start : b.end], a.start, b.end) for a, b in itertools.pairwise(sentences)
    ]
    best: tuple[Span, float] | None = None
    for span in candidates:
        score = support_score(claim, span.text)
        # Prefer the shorter span on ties: single sentences come first in `candidates`.
        if best is None or score > best[1] + 1e-9:
            best = (span, score)
    if best is None or best[1] < min_score:
        return None
    return best


def citation_for(
    passage: Passage,
    start: int,
    end: int,
    *,
    supported: bool,
    document: Document | None = None,
) -> Citation:
    """A Citation for `passage.chunk.text[start:end]`, with offsets in the source document.

    Its page is the one where the quote starts, given the chunk's `document`; without it, the
    chunk's own (first) page, which is wrong for a quote past a page break inside the chunk.
    """
    chunk = passage.chunk
    if not 0 <= start < end <= len(chunk.text):
        raise ValueError(f"span {start}:{end} is outside chunk {chunk.id} (len {len(chunk.text)})")
    page = chunk.page
    if document is not None and document.pages:
        page = document.page_at(chunk.start + start)
    return Citation(
        n=passage.rank,
        chunk_id=chunk.id,
        doc_id=chunk.doc_id,
        title=chunk.title,
        quote=chunk.text[start:end],
        start=chunk.start + start,
        end=chunk.start + end,
        page=page,
        supported=supported,
    )


def quote_citation(
    passage: Passage, span: Span, *, document: Document | None, supported: bool
) -> Citation:
    """A Citation quoting `span`, given in document offsets (it may reach outside the chunk,
    to quote a whole sentence); its page is the one where the quote starts."""
    chunk = passage.chunk
    page = chunk.page
    if document is not None:
        if document.text[span.start : span.end] != span.text:
            raise ValueError(f"span {span.start}:{span.end} is not {span.text!r} in {document.id}")
        page = document.page_at(span.start) if document.pages else chunk.page
    return Citation(
        n=passage.rank,
        chunk_id=chunk.id,
        doc_id=chunk.doc_id,
        title=chunk.title,
        quote=span.text,
        start=span.start,
        end=span.end,
        page=page,
        supported=supported,
    )


@dataclass(frozen=True)
class Claim:
    """One sentence of a generated answer (markers removed) and the passage numbers it cites."""

    text: str
    ns: tuple[int, ...]


def split_claims(answer: str) -> tuple[Claim, ...]:
    """Split answer text into sentences, each with the `[n]` markers that follow or sit in it.

    A marker placed right after a sentence's full stop ("... big. [1]") belongs to that sentence.
    """
    # Move markers that follow the full stop in front of it, so they stay with their sentence.
    moved = re.sub(r"([.!?])((?:\s*\[\d{1,3}\])+)", r"\2\1", answer)
    claims: list[Claim] = []
    for span in split_sentences(moved):
        ns = tuple(dict.fromkeys(int(n) for n in MARKER.findall(span.text)))
        text = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub("", span.text)).strip()
        text = text.rstrip(".!?").strip()
        if text:
            claims.append(Claim(text, ns))
    return tuple(claims)


def markers(answer: str) -> list[int]:
    """Every `[n]` number in the answer text, in order of appearance."""
    return [int(n) for n in MARKER.findall(answer)]


def in_range(ns: Iterable[int], n_passages: int) -> tuple[list[int], list[int]]:
    """Split passage numbers into (valid 1..n_passages, out of range)."""
    good: list[int] = []
    bad: list[int] = []
    for n in ns:
        (good if 1 <= n <= n_passages else bad).append(n)
    return good, bad
