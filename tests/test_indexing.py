"""qa.ingest.build: full and incremental builds with the real model; equal results either way."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings, load_settings
from qa.ingest.build import build_index
from qa.stores.faiss.store import FaissStore

DEMO = Path(__file__).resolve().parent.parent / "corpus" / "china-blockchain-policy-2017-2019.txt"
QUERIES = ["Which city issued a digital economy policy?", "What do bees make?", "ICO ban", "cats"]


def make_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO, folder / "china.txt")
    (folder / "bees.md").write_text("# Bees\n\nBees make honey from nectar. They live in hives.\n")
    (folder / "ants.txt").write_text("Ants\n\nAnts carry leaves many times their weight.\n")
    (folder / "notes.jsonl").write_text(
        '{"id": "n1", "title": "Rivers", "text": "The Nile is a long river."}\n'
        '{"id": "n2", "title": "Mountains", "text": "Everest is the highest mountain."}\n'
        "{broken line\n"
    )


def settings_for(tmp_path: Path, name: str, **overrides: object) -> Settings:
    return load_settings(
        corpus_dir=tmp_path / "corpus", index_dir=tmp_path / name, _env_file=None, **overrides
    )


def snapshot(settings: Settings, embedder) -> tuple:  # type: ignore[no-untyped-def]
    store = FaissStore.load(settings.index_dir, settings, dim=embedder.dim)
    chunks = store.chunks()
    vectors = np.array(store.vectors)
    hits = [[c.id for c, _ in store.search(embedder.embed_query(q), 5)] for q in QUERIES]
    docs = store.documents()
    store.close()
    return chunks, vectors, hits, docs


def test_full_then_incremental_equals_rebuild(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    settings = settings_for(tmp_path, "index")

    first = build_index(settings, embedder=embedder)
    assert (first.added, first.changed, first.removed, first.unchanged) == (5, 0, 0, 0)
    assert first.n_documents == 5 and first.n_embedded == first.n_chunks == 21
    assert first.full_rebuild and first.written
    assert [s.path for s in first.skipped] == ["notes.jsonl:3"]

    again = build_index(settings, embedder=embedder)
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 5)
    assert again.n_embedded == 0 and not again.written and not again.full_rebuild

    corpus = tmp_path / "corpus"
    (corpus / "cats.md").write_text("# Cats\n\nCats purr when they are content.\n")  # added
    (corpus / "bees.md").write_text(
        "# Bees\n\nBees make honey and wax. They live in hives.\n"
    )  # changed
    (corpus / "ants.txt").unlink()  # removed
    update = build_index(settings, embedder=embedder)
    assert (update.added, update.changed, update.removed, update.unchanged) == (1, 1, 1, 3)
    assert update.n_embedded == 2 and update.n_chunks == 21 and update.written

    full = build_index(settings_for(tmp_path, "full"), embedder=embedder)
    assert full.n_embedded == 21
    inc_chunks, inc_vectors, inc_hits, inc_docs = snapshot(settings, embedder)
    full_chunks, full_vectors, full_hits, full_docs = snapshot(
        settings_for(tmp_path, "full"), embedder
    )
    assert inc_chunks == full_chunks
    assert inc_docs == full_docs
    np.testing.assert_allclose(inc_vectors, full_vectors, atol=1e-5)
    assert inc_hits == full_hits
    assert inc_hits[1][0] == next(c.id for c in full_chunks if c.doc_id == "bees.md")
    assert [d.id for d in inc_docs] == ["bees.md", "cats.md", "china.txt", "n1", "n2"]


def test_changed_chunk_settings_rebuild_fully(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    build_index(settings_for(tmp_path, "index"), embedder=embedder)
    report = build_index(settings_for(tmp_path, "index", chunk_tokens=120), embedder=embedder)
    assert report.full_rebuild and report.n_embedded == report.n_chunks
    assert report.reason == "settings changed: chunk_tokens 200 -> 120"
    assert report.added == 5
    store = FaissStore.load(tmp_path / "index", settings_for(tmp_path, "index", chunk_tokens=120))
    assert store.manifest["chunk_tokens"] == 120
    assert max(c.n_tokens for c in store.chunks()) <= 125

    forced = build_index(
        settings_for(tmp_path, "index", chunk_tokens=120), embedder=embedder, rebuild=True
    )
    assert (
        forced.full_rebuild
        and forced.reason == "rebuild requested"
        and forced.n_embedded == forced.n_chunks
    )


class InterruptingEmbedder:
    """Wraps the real embedder and raises KeyboardInterrupt on the first embedding call."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        raise KeyboardInterrupt

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def test_interrupt_during_embedding_keeps_the_old_index(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    settings = settings_for(tmp_path, "index")
    build_index(settings, embedder=embedder)
    before = snapshot(settings, embedder)
    (tmp_path / "corpus" / "cats.md").write_text("# Cats\n\nCats purr.\n")
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, embedder=InterruptingEmbedder(embedder))
    after = snapshot(settings, embedder)
    assert after[0] == before[0] and after[2] == before[2]
    # No temporary folder left; index.cache/ is the embedding cache (qa.embedding.cache).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "index", "index.cache"]


def test_overrides_and_progress(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "elsewhere"
    corpus.mkdir()
    (corpus / "one.txt").write_text("A single short document.")
    settings = settings_for(tmp_path, "unused")
    report = build_index(
        settings, embedder=embedder, corpus_dir=corpus, index_dir=tmp_path / "idx", progress=True
    )
    assert report.index_dir == tmp_path / "idx" and report.n_chunks == 1
    assert not (tmp_path / "unused").exists()
    store = FaissStore.load(tmp_path / "idx", settings)
    assert store.manifest["model_token_limit"] == 254 and store.manifest["chunker"] == 1
    assert store.manifest["corpus_dir"] == str(corpus)
    assert store.chunks()[0].text == "A single short document."


def test_damaged_old_index_is_rebuilt(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    make_corpus(tmp_path / "corpus")
    settings = settings_for(tmp_path, "index")
    build_index(settings, embedder=embedder)
    (settings.index_dir / "manifest.json").write_text("{truncated")
    report = build_index(settings, embedder=embedder)
    assert report.full_rebuild and report.reason.startswith("old index unreadable: The manifest")
    assert FaissStore.load(settings.index_dir, settings).n_chunks == report.n_chunks == 21
