"""qa.stores.faiss.store: index folder round trip, atomic writes, manifest checks, index kinds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings, load_settings
from qa.errors import DocumentNotFoundError, IndexMismatchError, IndexNotFoundError
from qa.ingest.readers import make_document
from qa.stores.faiss.store import FaissStore
from qa.stores.folder import base_manifest
from qa.types import Chunk, Document

DIM = 16


def make_data(
    n_docs: int, per_doc: int, seed: int = 0
) -> tuple[list[Document], list[Chunk], np.ndarray]:
    docs = [
        make_document(
            f"d{i:03d}", f"Doc {i}", " ".join(f"w{i}_{j}" for j in range(per_doc)), f"d{i}.txt",
            pages=(0, 5) if i == 0 else (),
        )
        for i in range(n_docs)
    ]  # fmt: skip
    chunks = []
    for doc in docs:
        for j, word in enumerate(doc.text.split()):
            start = doc.text.index(word)
            chunks.append(
                Chunk(
                    f"{doc.id}-{j}",
                    doc.id,
                    doc.title,
                    word,
                    start,
                    start + len(word),
                    3,
                    doc.page_at(start),
                )
            )
    vectors = np.random.default_rng(seed).normal(size=(len(chunks), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return docs, chunks, vectors


def write(
    index_dir: Path, settings: Settings, seed: int = 0, n_docs: int = 3
) -> tuple[list[Document], list[Chunk], np.ndarray]:
    docs, chunks, vectors = make_data(n_docs, 4, seed)
    manifest = base_manifest(settings, model=settings.embedding_model, dim=DIM)
    FaissStore.write(
        index_dir,
        documents=docs,
        chunks=chunks,
        vectors=vectors,
        manifest=manifest,
        settings=settings,
        files={"d0.txt": "abc"},
    )
    return docs, chunks, vectors


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        index_dir=tmp_path / "index", corpus_dir=tmp_path / "corpus", _env_file=None
    )


def test_round_trip(settings: Settings) -> None:
    docs, chunks, vectors = write(settings.index_dir, settings)
    store = FaissStore.load(settings.index_dir, settings)

    assert sorted(p.name for p in settings.index_dir.iterdir()) == [
        "bm25",
        "index.faiss",
        "manifest.json",
        "store.sqlite",
        "vectors.npy",
    ]
    assert store.n_chunks == 12 and store.dim == DIM
    assert store.chunks() == tuple(chunks)
    assert store.documents() == tuple(docs)
    assert store.document("d000") == docs[0] and store.document("d000").pages == (0, 5)
    assert store.chunk("d001-2") == chunks[6]
    assert isinstance(store.vectors, np.memmap)
    np.testing.assert_array_equal(store.vectors, vectors)
    # Rows are read from the file in the order asked (pread, not the memory map).
    np.testing.assert_array_equal(
        store.chunk_vectors([c.id for c in reversed(chunks)]), vectors[::-1]
    )
    for row, vector in enumerate(vectors):
        hits = store.search(vector, 3)
        assert hits[0][0] == chunks[row]
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert store.search(vectors[:1], 100)[-1][0] in chunks  # k > n is fine
    assert len(store.search(vectors[0], 100)) == 12
    batch = store.search_batch(vectors[:5], 2)
    assert [hits[0][0] for hits in batch] == chunks[:5]

    m = store.manifest
    assert (m["format_version"], m["embedding_model"], m["dim"], m["normalized"]) == (
        1,
        "all-MiniLM-L6-v2",
        DIM,
        True,
    )
    assert (m["encoding"], m["chunk_tokens"], m["chunk_overlap"]) == ("cl100k_base", 200, 30)
    assert m["index"] == {"type": "flat", "params": {}, "requested": "auto"}
    assert m["counts"] == {"documents": 3, "chunks": 12, "files": 1}
    assert m["files"] == {"d0.txt": "abc"}
    assert m["documents"] == {d.id: d.content_hash for d in docs}
    assert set(m["versions"]) == {
        "qa", "faiss", "sentence-transformers", "torch", "tiktoken", "verifier",
    }  # fmt: skip
    assert m["versions"]["verifier"].startswith("minilm-verifier-")
    assert m["built_at"].endswith("+00:00")
    assert json.loads((settings.index_dir / "manifest.json").read_text()) == m
    store.close()


def test_store_is_read_only_and_thread_safe(settings: Settings) -> None:
    _, chunks, vectors = write(settings.index_dir, settings)
    store = FaissStore.load(settings.index_dir, settings)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._db.execute("DELETE FROM chunks")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                for row in (0, 5, 11):
                    assert store.search(vectors[row], 1)[0][0] == chunks[row]
                assert store.document("d002").id == "d002"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_missing_index(settings: Settings) -> None:
    with pytest.raises(
        IndexNotFoundError, match=r"^No index at .*/index/\. Run `qa index` first\.$"
    ):
        FaissStore.load(settings.index_dir, settings)


def test_unknown_ids(settings: Settings) -> None:
    write(settings.index_dir, settings)
    store = FaissStore.load(settings.index_dir, settings)
    with pytest.raises(DocumentNotFoundError, match=r"No document 'nope\.txt' in the index"):
        store.document("nope.txt")
    with pytest.raises(DocumentNotFoundError, match=r"No chunk 'zzz' in the index"):
        store.chunk("zzz")


def test_manifest_mismatch_names_fields_and_fix(settings: Settings, tmp_path: Path) -> None:
    write(settings.index_dir, settings)
    other = load_settings(
        index_dir=settings.index_dir, chunk_tokens=300, encoding="o200k_base", _env_file=None
    )
    with pytest.raises(IndexMismatchError) as info:
        FaissStore.load(settings.index_dir, other)
    message = str(info.value)
    assert "encoding: index has 'cl100k_base', settings say 'o200k_base'" in message
    assert "chunk_tokens: index has 200, settings say 300" in message
    assert "Run `qa index --rebuild`" in message and "delete" in message
    with pytest.raises(IndexMismatchError, match="dim: index has 16, settings say 384"):
        FaissStore.load(settings.index_dir, settings, dim=384)


@pytest.mark.parametrize(
    "target", ["faiss.write_index", "qa.stores.faiss.store._write_sqlite", "numpy.save"]
)
def test_failure_mid_write_keeps_the_previous_index(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    _, chunks, vectors = write(settings.index_dir, settings, seed=0)
    module, name = target.rsplit(".", 1)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(f"{module}.{name}", boom)
    with pytest.raises(OSError, match="injected"):
        write(settings.index_dir, settings, seed=1, n_docs=5)
    monkeypatch.undo()

    store = FaissStore.load(settings.index_dir, settings)
    assert store.chunks() == tuple(chunks)
    assert store.search(vectors[7], 1)[0][0] == chunks[7]
    assert sorted(p.name for p in settings.index_dir.parent.iterdir()) == ["index"]  # no temp left


def test_interrupted_swap_is_recovered(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    _, chunks, _ = write(settings.index_dir, settings)
    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:
        if self.name.startswith(".index.tmp-"):
            raise KeyboardInterrupt  # dies between moving the old index aside and the new in
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        write(settings.index_dir, settings, seed=1)
    monkeypatch.undo()
    assert FaissStore.load(settings.index_dir, settings).chunks() == tuple(chunks)

    # A process killed at that very moment leaves the old index aside: loading puts it back.
    settings.index_dir.rename(settings.index_dir.with_name(".index.old-deadbeef"))
    assert FaissStore.load(settings.index_dir, settings).chunks() == tuple(chunks)


def test_rewrite_replaces_the_index(settings: Settings) -> None:
    _, old_chunks, old_vectors = write(settings.index_dir, settings, seed=0)
    old = FaissStore.load(settings.index_dir, settings)
    _, chunks, vectors = write(settings.index_dir, settings, seed=1, n_docs=5)
    new = FaissStore.load(settings.index_dir, settings)
    assert new.chunks() == tuple(chunks) and new.n_chunks == 20
    assert old.n_chunks == 12 and old.document("d000").id == "d000"  # open store keeps working
    # ... and reads its own vectors, not the new file's at the same path.
    np.testing.assert_array_equal(old.chunk_vectors([c.id for c in old_chunks]), old_vectors)
    np.testing.assert_array_equal(new.chunk_vectors([c.id for c in chunks]), vectors)
    assert sorted(p.name for p in settings.index_dir.parent.iterdir()) == ["index"]


@pytest.mark.parametrize(
    ("overrides", "kind", "params"),
    [
        (
            {"index_type": "hnsw", "hnsw_m": 16},
            "hnsw",
            {"M": 16, "efConstruction": 40, "codes": "sq8"},
        ),
        (
            {"index_type": "auto", "auto_index_threshold": 100},
            "hnsw",
            {"M": 32, "efConstruction": 64, "codes": "sq8"},
        ),
        ({"index_type": "ivf"}, "ivf", {"nlist": 10}),
        ({"index_type": "flat"}, "flat", {}),
    ],
)
def test_index_kinds_find_each_indexed_vector(
    tmp_path: Path, overrides: dict[str, object], kind: str, params: dict[str, int]
) -> None:
    settings = load_settings(
        index_dir=tmp_path / "index", ivf_nprobe=64, _env_file=None, **overrides
    )
    docs, chunks, vectors = make_data(50, 8)  # 400 vectors
    manifest = base_manifest(settings, model=settings.embedding_model, dim=DIM)
    written = FaissStore.write(
        settings.index_dir,
        documents=docs,
        chunks=chunks,
        vectors=vectors,
        manifest=manifest,
        settings=settings,
    )
    assert written["index"]["type"] == kind and written["index"]["params"] == params
    store = FaissStore.load(settings.index_dir, settings)
    results = store.search_batch(vectors, 1)
    assert [hits[0][0] for hits in results] == chunks


def test_damaged_files_say_to_rebuild(settings: Settings) -> None:
    write(settings.index_dir, settings)
    (settings.index_dir / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexMismatchError, match=r"is damaged .*Run `qa index --rebuild`\.$"):
        FaissStore.load(settings.index_dir, settings)
    (settings.index_dir / "manifest.json").write_text("{truncated")
    with pytest.raises(IndexMismatchError, match=r"manifest .* cannot be read .*--rebuild"):
        FaissStore.load(settings.index_dir, settings)


def test_heavy_imports_stay_lazy() -> None:
    code = (
        "import sys, qa.stores.faiss.store, qa.stores.folder\n"
        "import qa.ingest.build, qa.ingest.chunking, qa.ingest.readers, qa.ingest.tokens\n"
        "heavy = {'faiss', 'torch', 'sentence_transformers', 'tiktoken', 'bs4', 'pypdf', 'rich'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_backends_of_one_vector_space_update_and_load_an_index_in_place() -> None:
    from qa.stores.folder import build_differences, manifest_differences

    torch_index = {"embedding_backend": "torch", "embedding_dtype": "float32"}
    for backend in ("onnx", "openvino", "auto"):
        assert build_differences(torch_index, {**torch_index, "embedding_backend": backend}) == []
    older = {}  # an index from before the backend was recorded: torch fp32
    assert (
        build_differences(older, {"embedding_backend": "onnx", "embedding_dtype": "float32"}) == []
    )
    int8 = {"embedding_backend": "onnx-int8", "embedding_dtype": "float32"}
    assert [f for f, _, _ in build_differences(torch_index, int8)] == ["embedding vector space"]
    settings = Settings(embedding_backend="onnx-int8")
    fields = [f for f, _, _ in manifest_differences(torch_index, settings)]
    assert "embedding vector space" in fields
