"""qa.embedding.cache: re-indexing embeds only unseen text; a bad cache is ignored."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings, load_settings
from qa.embedding.cache import CACHE_FILE, EmbeddingCache, cache_dir_for, text_hash
from qa.ingest.build import build_index
from qa.stores.faiss.store import FaissStore
from qa.types import embedding_text

DEMO = Path(__file__).resolve().parent.parent / "corpus" / "china-blockchain-policy-2017-2019.txt"


class CountingEmbedder:
    """The real embedder, recording every text it is asked to embed."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.batch_size = inner.batch_size
        self.embedded: list[str] = []

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @property
    def max_tokens(self) -> int:
        return int(self.inner.max_tokens)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return list(self.inner.count_tokens(texts))

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.embedded.extend(texts)
        return np.asarray(self.inner.embed_documents(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.inner.embed_query(text))

    def take(self) -> list[str]:
        done, self.embedded = self.embedded, []
        return done


def make_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO, folder / "china.txt")
    (folder / "bees.md").write_text("# Bees\n\nBees make honey from nectar.\n")


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(
        corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", _env_file=None, **overrides
    )


def indexed(settings: Settings) -> tuple[list[str], np.ndarray]:
    store = FaissStore.load(settings.index_dir, settings)
    try:
        return [embedding_text(c) for c in store.chunks()], np.array(store.vectors)
    finally:
        store.close()


def test_rebuild_and_changed_settings_embed_only_new_text(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    counting = CountingEmbedder(embedder)
    settings = settings_for(tmp_path)
    build_index(settings, embedder=counting)
    texts, vectors = indexed(settings)
    assert sorted(counting.take()) == sorted(texts) and len(texts) == 18
    assert (cache_dir_for(settings.index_dir) / CACHE_FILE).is_file()

    # A full rebuild, then an index-type change: every vector comes from the cache.
    build_index(settings, embedder=counting, rebuild=True)
    hnsw = settings_for(tmp_path, index_type="hnsw")
    build_index(hnsw, embedder=counting, rebuild=True)
    assert counting.take() == []
    again_texts, again_vectors = indexed(hnsw)
    assert again_texts == texts and np.array_equal(again_vectors, vectors)

    # Other chunking: only the texts never seen before are embedded (bees.md's stays the same).
    smaller = settings_for(tmp_path, chunk_tokens=120, chunk_overlap=20)
    build_index(smaller, embedder=counting)
    new_texts, _ = indexed(smaller)
    embedded = counting.take()
    assert sorted(embedded) == sorted(set(new_texts) - set(texts))
    assert "Bees\n# Bees\n\nBees make honey from nectar." in texts
    assert len(embedded) == len(new_texts) - 1


def test_a_changed_chunk_is_re_embedded_unchanged_ones_not(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    counting = CountingEmbedder(embedder)
    settings = settings_for(tmp_path)
    build_index(settings, embedder=counting)
    before, _ = indexed(settings)
    counting.take()

    # Edit the last sentence of the long document: only its last chunk(s) change.
    path = tmp_path / "corpus" / "china.txt"
    text = path.read_text().rstrip()
    path.write_text(text[: text.rstrip(".").rfind(".") + 1] + " The policy was revised in 2020.\n")
    build_index(settings, embedder=counting, rebuild=True)
    after, vectors = indexed(settings)
    embedded = counting.take()
    assert sorted(embedded) == sorted(set(after) - set(before))
    assert 1 <= len(embedded) <= 2 and len(after) == len(before)
    fresh = embedder.embed_documents(after)
    assert np.allclose(vectors, fresh, atol=1e-5)  # cached vectors are the model's vectors


def test_cache_can_be_turned_off(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    counting = CountingEmbedder(embedder)
    settings = settings_for(tmp_path, embedding_cache=False)
    build_index(settings, embedder=counting)
    build_index(settings, embedder=counting, rebuild=True)
    assert len(counting.take()) == 36
    assert not cache_dir_for(settings.index_dir).exists()


def test_the_space_is_part_of_the_key(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    vec = np.arange(4, dtype=np.float32)
    fp32 = EmbeddingCache(path, space="m|torch|float32|4", dim=4)
    fp32.put([text_hash("a")], vec[None, :])
    fp32.close()
    bf16 = EmbeddingCache(path, space="m|torch|bfloat16|4", dim=4)
    assert bf16.get([text_hash("a")]) == {}
    bf16.close()
    again = EmbeddingCache(path, space="m|torch|float32|4", dim=4)
    found = again.get([text_hash("a"), text_hash("b")])
    assert list(found) == [text_hash("a")] and np.array_equal(found[text_hash("a")], vec)
    assert (again.hits, again.misses) == (1, 1)


def test_a_corrupt_cache_is_replaced_with_a_warning(
    tmp_path: Path,
    embedder,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    make_corpus(tmp_path / "corpus")
    settings = settings_for(tmp_path)
    cache_file = cache_dir_for(settings.index_dir) / CACHE_FILE
    cache_file.parent.mkdir()
    cache_file.write_bytes(b"this is not a database" * 100)
    counting = CountingEmbedder(embedder)
    with caplog.at_level(logging.WARNING, logger="qa.embedding.cache"):
        report = build_index(settings, embedder=counting)
    assert report.n_chunks == 18 and len(counting.take()) == 18
    assert "is damaged" in caplog.text
    build_index(settings, embedder=counting, rebuild=True)  # the new cache works
    assert counting.take() == []


def test_lru_rows_beyond_the_bound_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    first = EmbeddingCache(path, space="s", dim=2, max_rows=0)
    first.max_rows = 2  # below MIN_ROWS only in this test
    first.put([b"old1", b"old2"], np.ones((2, 2)))
    first.close()
    second = EmbeddingCache(path, space="s", dim=2)
    second.max_rows = 2
    second.get([b"old2"])  # used again: newer than old1
    second.put([b"new"], np.ones((1, 2)))
    assert second.prune() == 1
    assert sorted(second.get([b"old1", b"old2", b"new"])) == [b"new", b"old2"]


def test_an_interrupted_ingest_keeps_what_it_embedded(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    settings = settings_for(tmp_path)

    class Interrupted(CountingEmbedder):
        def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
            if self.embedded:  # the second slice
                raise KeyboardInterrupt
            return super().embed_documents(texts, progress=progress)

    dying = Interrupted(embedder)
    dying.batch_size = 1  # slices of 16 texts: 18 chunks take two
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, embedder=dying)
    assert len(dying.embedded) == 16 and not settings.index_dir.exists()
    counting = CountingEmbedder(embedder)
    build_index(settings, embedder=counting)
    texts, _ = indexed(settings)
    assert sorted(counting.take()) == sorted(set(texts) - set(dying.embedded))
    assert len(texts) == 18
