"""Embedding backends on the real MiniLM weights: the exported ONNX graph on onnxruntime and
OpenVINO gives torch fp32's vectors, `auto` picks one that runs, a damaged export is rebuilt."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa.embedding.backends import NEEDS, compatible_backends, importable

from .conftest import DEMO_CORPUS
from .needs import dependency

MODEL = "all-MiniLM-L6-v2"


def _needs(backend: str) -> None:
    module, install = NEEDS[backend]
    dependency(importable(module), f"{module} for embedding_backend {backend} (`{install}`)")


@pytest.fixture(scope="module")
def demo_chunks(embedder) -> list[str]:  # type: ignore[no-untyped-def]
    """The embedding texts of the demo corpus, as `qa index` cuts them."""
    from qa.config import load_settings
    from qa.ingest.build import make_chunker
    from qa.ingest.readers import load_corpus
    from qa.types import embedding_text

    settings = load_settings(corpus_dir=DEMO_CORPUS, _env_file=None)
    docs = load_corpus(DEMO_CORPUS).documents
    chunks = make_chunker(settings, embedder).chunk_documents(docs)
    texts = [embedding_text(c) for per_doc in chunks for c in per_doc]
    assert len(texts) > 10
    return texts


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of exported models for this module (each exported once)."""
    return tmp_path_factory.mktemp("exported")


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_backends_give_torch_fp32_vectors(  # type: ignore[no-untyped-def]
    backend, embedder, demo_chunks, export_dir
) -> None:
    from qa.embedding.models import get_embedder

    _needs(backend)
    other = get_embedder(MODEL, backend=backend, export_dir=export_dir)
    got = other.embed_documents(demo_chunks)
    want = embedder.embed_documents(demo_chunks)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * want).sum(axis=1).min() >= 0.99
    question = "When was the cryptography law passed?"
    assert float(other.embed_query(question) @ embedder.embed_query(question)) >= 0.99
    # The same tokenizer and limit as sentence-transformers: chunk sizes come out the same.
    assert other.max_tokens == embedder.max_tokens == 254
    assert other.count_tokens(demo_chunks) == embedder.count_tokens(demo_chunks)
    assert compatible_backends(("torch", "float32"), (backend, "float32"))


def test_int8_is_close_but_its_own_vector_space(embedder, demo_chunks, export_dir) -> None:  # type: ignore[no-untyped-def]
    from qa.embedding.models import get_embedder

    _needs("onnx-int8")
    got = get_embedder(MODEL, backend="onnx-int8", export_dir=export_dir).embed_documents(
        demo_chunks
    )
    cosines = (got * embedder.embed_documents(demo_chunks)).sum(axis=1)
    # Below the 0.99 bar on some chunks (bench/README.md): never mixed with fp32 vectors.
    assert cosines.mean() >= 0.95
    assert not compatible_backends(("torch", "float32"), ("onnx-int8", "float32"))
    assert compatible_backends(("onnx-int8", "float32"), ("onnx-int8", "float32"))


def test_parallel_sessions_give_the_same_vectors_in_order(demo_chunks, export_dir) -> None:  # type: ignore[no-untyped-def]
    from qa.embedding import runtime
    from qa.embedding.runtime import ExportedEmbedder

    _needs("onnx")
    texts = (demo_chunks * (runtime._PARALLEL_MIN_TEXTS // len(demo_chunks) + 1))[::-1]
    one = ExportedEmbedder(MODEL, backend="onnx", folder=export_dir, workers=1)
    three = ExportedEmbedder(MODEL, backend="onnx", folder=export_dir, workers=3)
    want = one.embed_documents(texts)
    got = three.embed_documents(texts)
    # Every row is its own text's vector: batches spread over sessions land where they belong.
    assert np.allclose(got, want, atol=1e-6)
    assert len(three._doc_runs) == 2 and not one._doc_runs
    # A request's few sentences (the extractive answerer) stay on one session.
    few = ExportedEmbedder(MODEL, backend="onnx", folder=export_dir, workers=3)
    few.embed_documents(demo_chunks[: runtime._PARALLEL_MIN_TEXTS - 1])
    assert not few._doc_runs
    default = ExportedEmbedder(MODEL, backend="onnx", folder=export_dir)
    assert default.workers >= 1


def test_backends_that_agree_share_one_vector_space() -> None:
    from qa.embedding.backends import vector_space

    # torch fp32's name, so embedding caches written before keep their rows.
    assert vector_space("onnx", "float32") == vector_space("torch", "float32") == "torch|float32"
    assert vector_space("openvino", "float32") == vector_space("torch", "bfloat16")
    assert vector_space("onnx-int8", "float32") == "onnx-int8|float32"


def test_auto_picks_a_backend_that_runs_here(embedder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qa.config import load_settings
    from qa.embedding.backends import AUTO_ORDER, BACKENDS
    from qa.embedding.models import embedder_for, resolve_backend

    settings = load_settings(index_dir=tmp_path / "index", _env_file=None)
    assert settings.embedding_backend == "auto"
    resolved, reason = resolve_backend(settings)
    assert resolved.embedding_backend in BACKENDS and reason.startswith("auto: ")
    first_installed = next(b for b in AUTO_ORDER if b == "torch" or importable(NEEDS[b][0]))
    assert resolved.embedding_backend == first_installed
    chosen = embedder_for(resolved)
    assert getattr(chosen, "backend", "torch") == resolved.embedding_backend
    vector = chosen.embed_query("Bees make honey.")
    assert float(vector @ embedder.embed_query("Bees make honey.")) >= 0.99


def test_auto_falls_back_to_torch_when_nothing_else_runs() -> None:
    from qa.embedding import backends

    def cannot_run(backend: str) -> None:
        raise RuntimeError(f"{backend} does not run here")

    choice = backends._choose(dtype="float32", device="cpu", try_load=cannot_run)
    assert choice.backend == "torch" and "onnx: RuntimeError" in choice.reason
    bf16 = backends._choose(dtype="bfloat16", device="cpu", try_load=cannot_run)
    assert (bf16.backend, bf16.dtype) == ("torch", "bfloat16")


def test_a_damaged_export_is_rebuilt_not_fatal(  # type: ignore[no-untyped-def]
    embedder, export_dir, tmp_path, caplog
) -> None:
    from qa.embedding.runtime import ExportedEmbedder

    _needs("onnx")
    ExportedEmbedder(MODEL, backend="onnx", folder=export_dir).dim  # noqa: B018 - exported once
    folder = tmp_path / "models"
    shutil.copytree(export_dir, folder)
    (onnx_file,) = folder.glob("*-fp32-*.onnx")
    size = onnx_file.stat().st_size
    onnx_file.write_bytes(onnx_file.read_bytes()[: size // 3])  # a crash mid-copy, say
    text = "The People's Bank of China banned initial coin offerings."
    with caplog.at_level(logging.WARNING, logger="qa.embedding.export"):
        rebuilt = ExportedEmbedder(MODEL, backend="onnx", folder=folder)
        vector = rebuilt.embed_query(text)
    assert "is damaged" in caplog.text and "exporting it again" in caplog.text
    assert onnx_file.stat().st_size == size
    assert float(vector @ embedder.embed_query(text)) >= 0.99
    # A probe record that no longer matches (another file copied over it) is damage too.
    (probe,) = folder.glob("*-fp32-*.json")
    probe.write_text('{"probe": [0.0]}')
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qa.embedding.export"):
        again = ExportedEmbedder(MODEL, backend="onnx", folder=folder)
        assert float(again.embed_query(text) @ vector) >= 0.9999
    assert "no longer gives the vector" in caplog.text


def test_an_unwritable_model_folder_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qa.config import load_settings
    from qa.embedding.models import export_dir_for
    from qa.embedding.runtime import ExportedEmbedder
    from qa.errors import ConfigError

    _needs("onnx")
    (tmp_path / "a-file").write_text("in the way")
    settings = load_settings(model_cache_dir=tmp_path / "a-file" / "models", _env_file=None)
    with pytest.raises(ConfigError, match="model_cache_dir"):
        ExportedEmbedder(MODEL, backend="onnx", folder=export_dir_for(settings)).dim  # noqa: B018


def test_wordpieces_give_sentence_transformers_ids(embedder, demo_chunks) -> None:  # type: ignore[no-untyped-def]
    """The exported backends' tokenizer (`tokenizers`, no transformers) cuts text exactly as
    sentence-transformers does: same ids, mask and types, truncated at 256, same counts."""
    from qa.embedding.export import resolve_model_path
    from qa.embedding.wordpieces import WordPieces

    pieces = WordPieces(resolve_model_path(MODEL))
    assert pieces.max_seq_length == 256
    texts = [
        *demo_chunks,
        "",
        "Ça coûte 5 € : naïve café, Übermaß",
        "北京 東京タワー 서울 and ASCII",
        "tabs\tand\u200bzero width, emoji \U0001f600, control \x01 chars",
        "word " * 600,  # far past 256 pieces: truncated
    ]
    for start in range(0, len(texts), 8):
        batch = texts[start : start + 8]
        want = embedder.model.tokenize(batch)
        got = pieces.encode(batch)
        assert got.input_ids.tolist() == want["input_ids"].tolist()
        assert got.attention_mask.tolist() == want["attention_mask"].tolist()
        assert got.token_type_ids.tolist() == want["token_type_ids"].tolist()
    assert pieces.encode(["word " * 600]).input_ids.shape == (1, 256)
    assert pieces.count(texts) == embedder.count_tokens(texts)
    assert pieces.count(["word " * 600]) == [600]
