"""qa.stores.faiss.store at scale: approximate indexes (HNSW over 8-bit codes, IVF) find each
indexed vector as exact search does; indexes load memory-mapped and keep serving after a rewrite."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings, load_settings
from qa.stores.faiss.index import training_sample
from qa.stores.faiss.store import FaissStore
from qa.stores.folder import base_manifest
from qa.types import Chunk, Document

DIM = 64


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors in tight groups of 10 (near neighbours that an approximate index can mix up)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 10, DIM))
    x = centres[np.arange(n) // 10] + 0.3 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write(settings: Settings, vectors: np.ndarray) -> list[Chunk]:
    """An index folder with one document per 10 vectors (one chunk each)."""
    chunks, documents = [], []
    for d in range(0, len(vectors), 10):
        texts = [f"chunk {i}" for i in range(d, d + 10)]
        body = " ".join(texts)
        doc_id = f"d{d:05d}"
        documents.append(
            Document(doc_id, doc_id, body, doc_id, hashlib.sha256(body.encode()).hexdigest())
        )
        start = 0
        for i, t in enumerate(texts):
            chunks.append(Chunk(f"{doc_id}#{i}", doc_id, doc_id, t, start, start + len(t), 2))
            start += len(t) + 1
    FaissStore.write(
        settings.index_dir,
        documents=documents,
        chunks=chunks,
        vectors=vectors,
        manifest=base_manifest(settings, model=settings.embedding_model, dim=DIM),
        settings=settings,
    )
    return chunks


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"index_type": "auto", "auto_index_threshold": 1000}, "hnsw"),
        ({"index_type": "hnsw", "hnsw_m": 16}, "hnsw"),
        ({"index_type": "ivf", "ivf_nprobe": 16}, "ivf"),
    ],
)
def test_approximate_index_returns_the_exact_top1(
    tmp_path: Path, overrides: dict[str, object], kind: str
) -> None:
    settings = load_settings(index_dir=tmp_path / "index", _env_file=None, **overrides)
    vectors = clustered(3000, seed=0)
    chunks = write(settings, vectors)
    store = FaissStore.load(settings.index_dir, settings)
    assert store.manifest["index"]["type"] == kind
    exact_top1 = np.argmax(vectors @ vectors.T, axis=1)
    assert (exact_top1 == np.arange(len(vectors))).all()  # each vector is its own best match
    found = [hits[0][0] for hits in store.search_batch(vectors, 1)]
    assert found == chunks
    store.close()


def test_a_loaded_index_keeps_searching_after_a_rewrite(tmp_path: Path) -> None:
    settings = load_settings(index_dir=tmp_path / "index", index_type="hnsw", _env_file=None)
    old_vectors = clustered(500, seed=1)
    old_chunks = write(settings, old_vectors)
    old = FaissStore.load(settings.index_dir, settings)  # codes memory-mapped from the file
    write(settings, clustered(500, seed=2))  # the folder (and its files) replaced underneath
    assert [h[0][0] for h in old.search_batch(old_vectors[:50], 1)] == old_chunks[:50]
    old.close()


def test_training_sample_is_bounded_spread_and_repeatable() -> None:
    vectors = np.arange(1000 * 2, dtype=np.float32).reshape(1000, 2)
    assert training_sample(vectors, 5000) is vectors
    first, again = training_sample(vectors, 100), training_sample(vectors, 100)
    assert first.shape == (100, 2) and np.array_equal(first, again)
    rows = first[:, 0] // 2
    assert (np.diff(rows) > 0).all() and rows[0] < 100 and rows[-1] > 900
