"""qa.ingest.chunking: token-bounded chunks with exact offsets, within the model's limit."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from qa.errors import ConfigError
from qa.ingest.chunking import Chunker, chunk_id
from qa.ingest.readers import load_corpus, make_document
from qa.ingest.tokens import get_encoding
from qa.types import Chunk, Document, embedding_text

ENC = get_encoding("cl100k_base")
HAND = (
    "Title line\n\n"
    "The cat sat on the mat. It was warm there. The dog slept nearby.\n\n"
    "Birds sang outside. Rain came at noon. Everyone went in.\n\n"
    "The end."
)
HAND_DOC = make_document("hand.txt", "Title line", HAND, "hand.txt")


def spans(chunks: tuple[Chunk, ...]) -> list[tuple[int, int, int, str]]:
    return [(c.start, c.end, c.n_tokens, c.text) for c in chunks]


def check_invariants(doc: Document, chunks: tuple[Chunk, ...]) -> None:
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text
        assert c.n_tokens == len(ENC.encode_ordinary(c.text))
        assert (c.doc_id, c.title, c.page) == (doc.id, doc.title, doc.page_at(c.start))
        assert c.id == chunk_id(doc.id, c.start, c.end, c.text)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(doc.text) if not ch.isspace())


def test_exact_offsets_without_overlap() -> None:
    chunks = Chunker(ENC, chunk_tokens=16, overlap=0).chunk(HAND_DOC)
    assert spans(chunks) == [
        (0, 54, 15, "Title line\n\nThe cat sat on the mat. It was warm there."),
        (55, 116, 15, "The dog slept nearby.\n\nBirds sang outside. Rain came at noon."),
        (117, 144, 7, "Everyone went in.\n\nThe end."),
    ]
    check_invariants(HAND_DOC, chunks)


def test_exact_offsets_with_overlap_and_paragraph_cut() -> None:
    chunks = Chunker(ENC, chunk_tokens=16, overlap=6).chunk(HAND_DOC)
    assert spans(chunks) == [
        (0, 54, 15, "Title line\n\nThe cat sat on the mat. It was warm there."),
        # Ends at the paragraph end (10 tokens >= half of 16) rather than mid-paragraph.
        (36, 76, 10, "It was warm there. The dog slept nearby."),
        (55, 116, 15, "The dog slept nearby.\n\nBirds sang outside. Rain came at noon."),
        (98, 144, 12, "Rain came at noon. Everyone went in.\n\nThe end."),
    ]
    check_invariants(HAND_DOC, chunks)


def test_small_document_is_one_chunk_and_ids_are_stable() -> None:
    first = Chunker(ENC, chunk_tokens=200, overlap=30).chunk(HAND_DOC)
    assert spans(first) == [(0, 144, 37, HAND)]
    assert first == Chunker(ENC, chunk_tokens=200, overlap=30).chunk(HAND_DOC)
    assert first[0].id == chunk_id("hand.txt", 0, 144, HAND)
    assert len(first[0].id) == 16


def test_token_offsets_match_tiktoken() -> None:
    from qa.ingest.tokens import TokenOffsets

    text = "Grüße 世界! naïve café 🎉🎉 x\u0301 — 12345 \n\n end"
    for name in ("cl100k_base", "o200k_base"):
        enc = get_encoding(name)
        expected = enc.decode_with_offsets(enc.encode_ordinary(text))[1]
        assert TokenOffsets(text, enc).starts == expected


def test_blank_documents_have_no_chunks() -> None:
    chunker = Chunker(ENC)
    assert chunker.chunk(make_document("e", "E", "", "e")) == ()
    assert chunker.chunk(make_document("w", "W", " \n\n\t ", "w")) == ()


def test_surrounding_whitespace_is_outside_the_offsets() -> None:
    doc = make_document("ws", "WS", "\n\n   Hello there.   \n\n", "ws")
    assert spans(Chunker(ENC).chunk(doc)) == [(5, 17, 3, "Hello there.")]


def test_demo_corpus_invariants() -> None:
    doc = load_corpus(Path(__file__).resolve().parent.parent / "corpus").documents[0]
    chunks = Chunker(ENC, chunk_tokens=200, overlap=30).chunk(doc)
    check_invariants(doc, chunks)
    assert all(c.n_tokens <= 205 for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    # Neighbours share whole sentences of at most ~30 tokens.
    for a, b in itertools.pairwise(chunks):
        assert b.start <= a.end
        assert len(ENC.encode_ordinary(doc.text[b.start : a.end])) <= 32


def test_long_unbroken_text_is_cut_at_token_boundaries() -> None:
    doc = make_document("blob", "Blob", "x" * 3000, "blob")
    chunks = Chunker(ENC, chunk_tokens=50, overlap=10).chunk(doc)
    check_invariants(doc, chunks)
    assert all(c.n_tokens <= 50 for c in chunks)
    assert "".join(c.text for c in chunks) == doc.text  # no overlap inside one "word"


def test_long_sentence_is_cut_at_spaces() -> None:
    text = " ".join(f"word{i}" for i in range(300))
    doc = make_document("words", "Words", text, "words")
    chunks = Chunker(ENC, chunk_tokens=40, overlap=5).chunk(doc)
    check_invariants(doc, chunks)
    assert all(c.n_tokens <= 40 for c in chunks)
    assert all(c.text.split()[0].startswith("word") for c in chunks)
    # Overlap inside a long sentence starts at a word: the last ~5 tokens of the piece before.
    for a, b in itertools.pairwise(chunks):
        assert 0 < len(ENC.encode_ordinary(text[b.start : a.end])) <= 5
        assert text[b.start - 1] == " "


def test_pages_come_from_the_document() -> None:
    text = "Page one text.\n\nPage two text."
    doc = make_document("p.pdf", "P", text, "p.pdf", pages=(0, 16))
    chunks = Chunker(ENC, chunk_tokens=16, overlap=0).chunk(doc)
    assert [(c.text, c.page) for c in chunks] == [("Page one text.\n\nPage two text.", 1)]
    chunks = Chunker(ENC, chunk_tokens=5, overlap=0).chunk(doc)
    assert [(c.text, c.page) for c in chunks] == [("Page one text.", 1), ("Page two text.", 2)]


def test_embedding_text() -> None:
    chunk = Chunk("id", "d", "My Title", "Body text.", 0, 10, 3)
    assert embedding_text(chunk) == "My Title\nBody text."
    starts_with_title = Chunk("id", "d", "My Title", "My Title\n\nBody.", 0, 15, 5)
    assert embedding_text(starts_with_title) == "My Title\n\nBody."
    assert embedding_text(Chunk("id", "d", "", "Body.", 0, 5, 2)) == "Body."
    long_title = "t " * 200
    assert len(embedding_text(Chunk("id", "d", long_title, "B", 0, 1, 1))) <= 202


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="overlap=10"):
        Chunker(ENC, chunk_tokens=10, overlap=10)
    with pytest.raises(ConfigError, match="both"):
        Chunker(ENC, model_token_limit=10)


def test_model_limit_with_a_fake_counter() -> None:
    # One "model token" per character: chunks must be cut far below the 200 tiktoken tokens.
    chunker = Chunker(
        ENC, chunk_tokens=200, overlap=30, model_token_limit=60,
        count_model_tokens=lambda texts: [len(t) for t in texts],
    )  # fmt: skip
    chunks = chunker.chunk(HAND_DOC)
    check_invariants(HAND_DOC, chunks)
    assert max(len(embedding_text(c)) for c in chunks) <= 60
    assert len(chunks) > 1


def test_no_chunk_exceeds_the_real_model_limit(embedder) -> None:  # type: ignore[no-untyped-def]
    chunker = Chunker(
        ENC,
        chunk_tokens=200,
        overlap=30,
        model_token_limit=embedder.max_tokens,
        count_model_tokens=embedder.count_tokens,
    )
    assert embedder.max_tokens == 254
    docs = [
        make_document("nospace", "No spaces", "ab" * 1500, "nospace"),
        make_document("numbers", "Numbers", " ".join(str(i) for i in range(2000)), "numbers"),
        make_document("mixed", "Mixed", "Zß9-" * 700 + ". Normal sentence here.", "mixed"),
        make_document("dense", "Dense", "\n\n".join(["α=β/γ; δ≈ε·ζ. " * 40] * 3), "dense"),
        load_corpus(Path(__file__).resolve().parent.parent / "corpus").documents[0],
    ]
    for doc, chunks in zip(docs, chunker.chunk_documents(docs), strict=True):
        check_invariants(doc, chunks)
        counts = embedder.count_tokens([embedding_text(c) for c in chunks])
        assert max(counts) <= embedder.max_tokens, doc.id
