"""The real MiniLM embedder: normalised vectors, model token counts, the shared query cache."""

from __future__ import annotations

import numpy as np


def test_vectors_are_normalised_float32(embedder) -> None:  # type: ignore[no-untyped-def]
    docs = embedder.embed_documents(["Kunming issued a digital economy policy.", "Hangzhou"])
    assert docs.shape == (2, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert embedder.max_tokens == 254
    assert embedder.count_tokens(["hello world", ""]) == [2, 0]


def test_a_question_is_embedded_once_and_shared_read_only(embedder) -> None:  # type: ignore[no-untyped-def]
    first = embedder.embed_query("When was the cryptography law passed?")
    again = embedder.embed_query("When was the cryptography law passed?")
    assert again is first and not first.flags.writeable
    fresh = embedder.embed_documents(["When was the cryptography law passed?"])[0]
    assert float(first @ fresh) > 0.999


SAMPLES = [
    "Kunming issued a digital economy policy in 2019.",
    "The People's Bank of China banned initial coin offerings in September 2017.",
    "Bees make honey from nectar and live in hives.",
    "What is the effect of vitamin D on bone density in older adults?",
]


def test_bfloat16_vectors_are_close_to_float32(embedder) -> None:  # type: ignore[no-untyped-def]
    from qa.embedding.models import cpu_has_bf16, get_embedder

    from .needs import cpu_feature

    cpu_feature(cpu_has_bf16(), "native bfloat16 (avx512_bf16 or amx_bf16)")
    bf16 = get_embedder("all-MiniLM-L6-v2", dtype="bfloat16")
    got = bf16.embed_documents(SAMPLES)
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * embedder.embed_documents(SAMPLES)).sum(axis=1)
    assert cosines.min() >= 0.99
    query = bf16.embed_query(SAMPLES[0])
    assert query.dtype == np.float32 and float(query @ got[0]) >= 0.99


def test_two_processes_give_the_single_process_vectors(embedder) -> None:  # type: ignore[no-untyped-def]
    from qa.embedding.models import SentenceTransformerEmbedder

    texts = [f"{s} (variant {i})" for i in range(64) for s in SAMPLES]  # 256: enough for the pool
    pooled = SentenceTransformerEmbedder("all-MiniLM-L6-v2", processes=2)
    try:
        got = pooled.embed_documents(texts)
        assert pooled._pool is not None and len(pooled._pool["processes"]) == 2
    finally:
        pooled.close()
    assert got.shape == (256, 384) and got.dtype == np.float32
    assert (got * embedder.embed_documents(texts)).sum(axis=1).min() >= 0.9999


def test_options_this_machine_cannot_run_are_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import re

    import pytest

    import qa.embedding.models as embedding
    from qa.errors import ConfigError

    with pytest.raises(ConfigError, match="'bfloat16' needs the torch backend"):
        embedding.check_options(backend="onnx", dtype="bfloat16", processes=1)
    with pytest.raises(ConfigError, match="Unknown embedding backend 'tensorrt'"):
        embedding.check_options(backend="tensorrt", dtype="float32", processes=1)
    monkeypatch.setattr(embedding, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"needs a CPU with native bf16 .* --embedding-dtype"):
        embedding.get_embedder("all-MiniLM-L6-v2", dtype="bfloat16", batch_size=7)
    import qa.embedding.backends as backends

    monkeypatch.setattr(backends, "importable", lambda module: False)
    for backend, install in (
        ("onnx", "pip install onnxruntime onnx"),
        ("onnx-int8", "pip install onnxruntime onnx"),
        ("openvino", "pip install -c constraints.txt -e '.[openvino]'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"Run `{install}`")):
            embedding.get_embedder("all-MiniLM-L6-v2", backend=backend)
    with pytest.raises(ConfigError, match="runs on the CPU only, not on 'cuda'"):
        embedding.check_options(backend="onnx", dtype="float32", processes=1, device="cuda")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from qa.embedding.models import cpu_has_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("flags\t\t: fpu sse2 avx512f avx512_vnni\n")
    assert not cpu_has_bf16(info)
    info.write_text("flags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "missing")
