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
