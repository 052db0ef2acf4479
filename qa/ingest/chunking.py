"""Split Documents into token-bounded Chunks with exact character offsets.

Chunks hold about `chunk_tokens` tokens of the tiktoken `encoding`. Cuts fall at paragraph
ends when one is at least half-way into the chunk, else at sentence ends; a sentence longer
than a chunk is cut at spaces, and a "word" longer than a chunk at token boundaries. A chunk
starts with up to `overlap` tokens of whole sentences from the end of the one before, or,
when its last sentence alone is longer, with that sentence's last ~`overlap` tokens from the
start of a word. The whole document is tokenized once; spans are counted by bisecting the
token offsets.
`document.text[chunk.start:chunk.end] == chunk.text` always holds.

Hard rule: with `model_token_limit` and `count_model_tokens` (the embedding model's own
tokenizer), no chunk's `embedding_text` is longer than the model reads, so the encoder never
truncates silently: a document with a chunk over the limit is chunked again with the budget
at which its densest chunk fits (so its chunks stay as large as the model allows).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qa.errors import ConfigError
from qa.ingest.tokens import TokenOffsets
from qa.types import Chunk, Document, embedding_text_of, short_title

if TYPE_CHECKING:
    import tiktoken

# Bump when chunk boundaries or embedding_text change: indexes built before get rebuilt
# rather than mixing old and new chunks in one incremental update.
CHUNKER_VERSION = 1

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# After the end mark of a sentence (and closing quotes/brackets), or at a line break.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])\s*|\n\s*")
_NON_SPACE = re.compile(r"\S")
_SPACE = re.compile(r"\s")
# Documents chunked together: one model-token count per group, token offsets freed after it.
_GROUP = 512
# Aim a little under the estimated fit, so one refit is nearly always enough.
_REFIT_MARGIN = 0.97


def chunk_id(doc_id: str, start: int, end: int, text: str) -> str:
    """Stable id: the same text at the same place gets the same id in every build."""
    return hashlib.sha1(f"{doc_id}\0{start}\0{end}\0{text}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of one) that is never cut further when packing."""

    start: int
    end: int
    para_end: bool


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Move (start, end) inwards past surrounding whitespace."""
    match = _NON_SPACE.search(text, start, end)
    if match is None:
        return start, start
    start = match.start()
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between matches of `pattern`, trimmed."""
    out, pos = [], start
    for match in pattern.finditer(text, start, end):
        piece = _trim(text, pos, match.start())
        if piece[1] > piece[0]:
            out.append(piece)
        pos = match.end()
    piece = _trim(text, pos, end)
    if piece[1] > piece[0]:
        out.append(piece)
    return out


class Chunker:
    """Cuts documents into chunks of about `chunk_tokens` tokens with `overlap` tokens shared."""

    def __init__(
        self,
        encoding: tiktoken.Encoding,
        *,
        chunk_tokens: int = 200,
        overlap: int = 30,
        model_token_limit: int | None = None,
        count_model_tokens: Callable[[Sequence[str]], list[int]] | None = None,
    ) -> None:
        if chunk_tokens < 1 or not 0 <= overlap < chunk_tokens:
            raise ConfigError(
                f"Need chunk_tokens >= 1 and 0 <= overlap < chunk_tokens, got "
                f"chunk_tokens={chunk_tokens}, overlap={overlap}."
            )
        if (model_token_limit is None) != (count_model_tokens is None):
            raise ConfigError("Pass both model_token_limit and count_model_tokens, or neither.")
        self.encoding = encoding
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.model_token_limit = model_token_limit
        self.count_model_tokens = count_model_tokens

    def chunk(self, doc: Document) -> tuple[Chunk, ...]:
        """The chunks of one document, in text order (none for a blank document)."""
        return self.chunk_documents([doc])[0]

    def chunk_documents(self, docs: Iterable[Document]) -> list[tuple[Chunk, ...]]:
        """Chunks of each document, in order; model tokens are counted in batches."""
        docs = list(docs)
        out: list[tuple[Chunk, ...]] = []
        for lo in range(0, len(docs), _GROUP):
            out.extend(self._chunk_group(docs[lo : lo + _GROUP]))
        return out

    def _chunk_group(self, docs: list[Document]) -> list[tuple[Chunk, ...]]:
        tokens = [TokenOffsets(doc.text, self.encoding) for doc in docs]
        spans = [
            self._split(tok, 0, len(doc.text), self.chunk_tokens, self.overlap)
            for doc, tok in zip(docs, tokens, strict=True)
        ]
        if self.model_token_limit is not None:
            spans = self._fit_model(docs, tokens, spans)
        return [
            self._make_chunks(doc, doc_spans) for doc, doc_spans in zip(docs, spans, strict=True)
        ]

    # -- packing -------------------------------------------------------------------------

    def _split(
        self, tok: TokenOffsets, start: int, end: int, budget: int, overlap: int
    ) -> list[tuple[int, int]]:
        """Spans of at most ~`budget` tokens covering text[start:end]."""
        units = self._units(tok, start, end, budget, overlap)
        return _pack(units, tok, budget, overlap)

    def _units(
        self, tok: TokenOffsets, start: int, end: int, budget: int, overlap: int
    ) -> list[_Unit]:
        text = tok.text
        units: list[_Unit] = []
        for p_start, p_end in _spans(text, start, end, _PARAGRAPH_BREAK):
            sentences = _spans(text, p_start, p_end, _SENTENCE_BREAK)
            for i, (s_start, s_end) in enumerate(sentences):
                last = i == len(sentences) - 1
                if tok.count(s_start, s_end) <= budget:
                    units.append(_Unit(s_start, s_end, last))
                    continue
                # Pieces leave room for the overlap that the next span starts with.
                pieces = _cut_long(tok, s_start, s_end, budget - overlap)
                units.extend(_Unit(a, b, last and b == s_end) for a, b in pieces)
        return units

    # -- the model's own limit -------------------------------------------------------------

    def _fit_model(
        self, docs: list[Document], tokens: list[TokenOffsets], spans: list[list[tuple[int, int]]]
    ) -> list[list[tuple[int, int]]]:
        """Chunk again, with a smaller budget, every document that has a chunk whose
        embedding text is over the model's token limit, until none is."""
        assert self.model_token_limit is not None and self.count_model_tokens is not None
        limit = self.model_token_limit
        titles = self.count_model_tokens([short_title(d.title) for d in docs])
        budgets = [self.chunk_tokens] * len(docs)
        pending = list(range(len(docs)))
        while pending:
            refit: dict[int, int] = {}  # doc -> the budget at which its densest chunk fits
            for (d, start, end), n in self._over_limit(docs, spans, pending):
                enc = tokens[d].count(start, end)
                room = limit - titles[d]
                if enc <= 1 or room < 1:
                    raise ConfigError(
                        f"Cannot fit a chunk of document {docs[d].id!r} into the embedding "
                        f"model's {limit} tokens (its title alone takes {titles[d]})."
                    )
                fits = int(enc * room / (n - titles[d]) * _REFIT_MARGIN)
                refit[d] = min(refit.get(d, budgets[d] - 1), max(fits, 1))
            for d, budget in refit.items():
                budgets[d] = budget
                overlap = min(self.overlap, budget // 4)
                spans[d] = self._split(tokens[d], 0, len(docs[d].text), budget, overlap)
            pending = sorted(refit)
        return spans

    def _over_limit(
        self, docs: list[Document], spans: list[list[tuple[int, int]]], which: list[int]
    ) -> list[tuple[tuple[int, int, int], int]]:
        """((doc, start, end), model tokens) of each span over the limit, counted in one batch."""
        assert self.model_token_limit is not None and self.count_model_tokens is not None
        keys, texts = [], []
        for d in which:
            for start, end in spans[d]:
                text = embedding_text_of(docs[d].title, docs[d].text[start:end])
                # A word piece covers at least one character: short texts cannot be over.
                if len(text) > self.model_token_limit:
                    keys.append((d, start, end))
                    texts.append(text)
        counts = self.count_model_tokens(texts) if texts else []
        return [(k, n) for k, n in zip(keys, counts, strict=True) if n > self.model_token_limit]

    def _make_chunks(self, doc: Document, spans: list[tuple[int, int]]) -> tuple[Chunk, ...]:
        texts = [doc.text[start:end] for start, end in spans]
        # encode_ordinary_batch would start a thread pool per call: slower for a few texts.
        counts = [len(self.encoding.encode_ordinary(text)) for text in texts]
        return tuple(
            Chunk(
                id=chunk_id(doc.id, start, end, text),
                doc_id=doc.id,
                title=doc.title,
                text=text,
                start=start,
                end=end,
                n_tokens=n,
                page=doc.page_at(start),
            )
            for (start, end), text, n in zip(spans, texts, counts, strict=True)
        )


def _cut_long(tok: TokenOffsets, start: int, end: int, budget: int) -> list[tuple[int, int]]:
    """Pieces of a sentence longer than `budget` tokens: cut at spaces, else at tokens."""
    text = tok.text
    pieces: list[tuple[int, int]] = []
    pos = start
    while tok.count(pos, end) > budget:
        limit = min(tok.cut_after(pos, budget), end)
        if limit <= pos:
            limit = pos + 1
        space = max(text.rfind(" ", pos, limit), text.rfind("\t", pos, limit))
        cut = space if space > pos else limit
        piece = _trim(text, pos, cut)
        if piece[1] > piece[0]:
            pieces.append(piece)
        pos = _trim(text, cut, end)[0]
    piece = _trim(text, pos, end)
    if piece[1] > piece[0]:
        pieces.append(piece)
    return pieces


def _pack(
    units: list[_Unit], tok: TokenOffsets, budget: int, overlap: int
) -> list[tuple[int, int]]:
    """Greedy packing of units into spans of <= budget tokens; a span ends at a paragraph end
    when one is at least half-way into it; the next span starts ~overlap tokens earlier."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(units)
    first = units[0].start if units else 0
    fresh = 0  # the first unit not in the span before: each span must reach past it
    while i < n:
        j = i
        while j + 1 < n and tok.count(first, units[j + 1].end) <= budget:
            j += 1
        k = j
        if j + 1 < n:
            for m in range(j, max(i, fresh) - 1, -1):
                if tok.count(first, units[m].end) * 2 < budget:
                    break
                if units[m].para_end:
                    k = m
                    break
        spans.append((first, units[k].end))
        if k + 1 >= n:
            break
        i, first = _next_start(units, tok, i, k, first, budget, overlap)
        fresh = k + 1
    return spans


def _next_start(
    units: list[_Unit], tok: TokenOffsets, i: int, k: int, first: int, budget: int, overlap: int
) -> tuple[int, int]:
    """(unit, char) where the span after units[i..k] starts: whole units worth <= overlap
    tokens back; else, when the last unit alone is longer, its last ~overlap tokens from a
    word start; never so far back that units[k + 1] no longer fits."""
    end, fit_end = units[k].end, units[k + 1].end
    nxt, m = k + 1, k
    while (
        m > i
        and tok.count(units[m].start, end) <= overlap
        and tok.count(units[m].start, fit_end) <= budget
    ):
        nxt, m = m, m - 1
    if nxt <= k or overlap == 0:
        return nxt, units[nxt].start
    text = tok.text
    pos = tok.tail_start(end, overlap)
    if pos > 0 and not text[pos - 1].isspace():
        space = _SPACE.search(text, pos, end)
        if space is None:  # one unbroken "word": no overlap inside it
            return k + 1, units[k + 1].start
        pos = space.start()
    pos = _trim(text, pos, end)[0]
    if first < pos < end and tok.count(pos, fit_end) <= budget:
        return k, pos
    return k + 1, units[k + 1].start
