"""BM25 keyword index: tokenizer, scores, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qa.stores.bm25 import Bm25Index, tokenize

TEXTS = [
    "China's central bank regulates blockchain companies.",
    "The cat sat on the mat.",
    "Regulators fined three banks in 2019.",
    "",
]


def test_tokenize_lowercases_stems_and_drops_stop_words() -> None:
    assert tokenize("The Regulations of China's banks") == ["regul", "china", "bank"]
    assert tokenize("the of and") == []
    assert tokenize("10 million yuan, 5G") == ["10", "million", "yuan", "5g"]


def test_search_ranks_matching_texts_and_skips_non_matching() -> None:
    index = Bm25Index.build(TEXTS)
    hits = index.search("bank regulation", 10)
    assert [i for i, _ in hits] == [0, 2] or [i for i, _ in hits] == [2, 0]
    assert all(score > 0 for _, score in hits)
    assert index.search("the", 5) == []  # stop words only
    assert index.search("zebra", 5) == []  # unknown term
    assert index.search("mat", 5)[0][0] == 1


def test_saved_index_gives_identical_scores(tmp_path: Path) -> None:
    index = Bm25Index.build(TEXTS)
    index.save(tmp_path / "bm25")
    for mmap in (False, True):
        loaded = Bm25Index.load(tmp_path / "bm25", mmap=mmap)
        for query in ("bank regulation", "cat mat", "2019 fined"):
            assert np.array_equal(loaded.scores(query), index.scores(query))
            assert loaded.search(query, 3) == index.search(query, 3)


def test_empty_index(tmp_path: Path) -> None:
    index = Bm25Index.build([])
    index.save(tmp_path / "e")
    assert Bm25Index.load(tmp_path / "e").search("anything", 3) == []
