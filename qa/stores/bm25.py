"""Keyword search: a BM25 index over chunk texts, built with the index and saved beside it.

Built once by `qa index` (never per query) with bm25s, whose sparse score matrix loads back
memory-mapped, so a million chunks cost little RAM. Tokens: lower-cased words and numbers,
English stop words dropped, Snowball-stemmed — "regulations" matches "regulation".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import bm25s

# Lucene's BM25 (what BEIR and bm25s report on SciFact) with its usual constants.
_METHOD, _K1, _B = "lucene", 1.5, 0.75
# Bumped when tokenize() changes, so an index is never queried with other tokens than it holds.
TOKENIZER_VERSION = 1
INFO = {"method": _METHOD, "k1": _K1, "b": _B, "tokenizer": TOKENIZER_VERSION}
PARAMS_FILE = "qa_bm25.json"
# Words and numbers; a possessive "'s" goes with its word and is dropped with the apostrophe.
_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*", re.UNICODE)
_POSSESSIVE = re.compile(r"['\u2019]s$")


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """The BM25 terms of a text: lower-case words minus stop words, stemmed."""
    stop = _stopwords()
    words = [_POSSESSIVE.sub("", w) for w in _TOKEN.findall(text.lower())]
    words = [w.replace("\u2019", "'") for w in words if w not in stop]
    return list(_stemmer().stemWords(words))


class Bm25Index:
    """BM25 scores of every chunk for any query; positions are those of the built texts."""

    def __init__(self, model: bm25s.BM25, n_docs: int) -> None:
        self._model = model
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: Sequence[str]) -> Bm25Index:
        """Index the texts (position i = texts[i])."""
        import bm25s

        model = bm25s.BM25(method=_METHOD, k1=_K1, b=_B)
        tokens = [tokenize(t) for t in texts]
        if texts:
            model.index(tokens, show_progress=False)
        return cls(model, len(texts))

    def save(self, folder: Path) -> None:
        """Write the index into `folder` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.n_docs:
            self._model.save(str(folder))
        params = {**INFO, "n_docs": self.n_docs}
        (folder / PARAMS_FILE).write_text(json.dumps(params), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, *, mmap: bool = False) -> Bm25Index:
        """Read an index written by `save` (memory-mapped scores when `mmap`)."""
        import bm25s

        folder = Path(folder)
        params = json.loads((folder / PARAMS_FILE).read_text(encoding="utf-8"))
        n_docs = int(params["n_docs"])
        if not n_docs:
            return cls(bm25s.BM25(method=_METHOD, k1=_K1, b=_B), 0)
        model = bm25s.BM25.load(str(folder), mmap=mmap, load_corpus=False)
        return cls(model, n_docs)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every document for the query (zeros when no term is known)."""
        if not self.n_docs:
            return np.zeros(0, dtype=np.float32)
        ids = self._model.get_tokens_ids(tokenize(query))
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._model.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The k best (position, score) pairs with a positive score, best first."""
        scores = self.scores(query)
        if k < 1 or not scores.size:
            return []
        k = min(k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """`search` for each query."""
        return [self.search(q, k) for q in queries]
