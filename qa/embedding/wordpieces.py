"""The model's own tokenizer on the `tokenizers` package, for the exported backends.

transformers' `AutoTokenizer` imports torch (seconds of `qa serve` start-up; bench/startup.py);
the `tokenizers` package it wraps imports in ~25 ms. A model folder with a `tokenizer.json`
(every sentence-transformers model with a fast tokenizer) is read directly; anything else
(a hub name, a slow-only tokenizer) goes through transformers once and keeps its fast backend.
Padding and truncation are set as sentence-transformers asks transformers for them (pad to
the longest text, truncate to max_seq_length), so the ids are the same (tests/test_backends.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Batch:
    """The three int64 inputs of a BERT-style encoder, (n, longest) each."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class WordPieces:
    """Encodes batches for the model (with [CLS]/[SEP], padded, truncated) and counts tokens.

    The encoder's padding and truncation are set once: they are settings of the object, and
    changing them per call (as transformers does) races between threads. Counting uses a copy
    with neither, made on the first count.
    """

    def __init__(self, path: str, max_seq_length: int | None = None) -> None:
        encoder, pad_token = _load(path)
        self.max_seq_length = max_seq_length or _model_max_length(path)
        pad_id = encoder.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"{path}: the pad token {pad_token!r} is not in the vocabulary")
        self._counter: Any = None  # made on first use: only chunking counts, serving does not
        self._lock = threading.Lock()
        encoder.enable_truncation(self.max_seq_length)
        encoder.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._encoder = encoder

    def encode(self, texts: Sequence[str]) -> Batch:
        """Model inputs for `texts`, padded to the longest, truncated to max_seq_length."""
        encodings = self._encoder.encode_batch_fast(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return Batch(ids, mask, types)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Each text's token count, whole (no truncation) and without special tokens."""
        encodings = self._whole().encode_batch_fast(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def _whole(self) -> Any:
        """A copy of the tokenizer that neither pads nor truncates."""
        with self._lock:
            if self._counter is None:
                from tokenizers import Tokenizer

                counter = Tokenizer.from_str(self._encoder.to_str())
                counter.no_padding()
                counter.no_truncation()
                self._counter = counter
            return self._counter


def _load(path: str) -> tuple[Any, str]:
    """The fast tokenizer of the model at `path` and its pad token."""
    from tokenizers import Tokenizer

    folder = Path(path)
    file = folder / "tokenizer.json"
    if file.is_file():
        config = _json(folder / "tokenizer_config.json")
        pad = config.get("pad_token") or _json(folder / "special_tokens_map.json").get("pad_token")
        if isinstance(pad, dict):  # {"content": "[PAD]", ...} in newer files
            pad = pad.get("content")
        return Tokenizer.from_file(str(file)), str(pad or "[PAD]")
    # No tokenizer.json here: let transformers build the fast tokenizer (imports torch).
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(path)
    backend = getattr(auto, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{path}: no fast tokenizer; the exported backends need tokenizer.json")
    return Tokenizer.from_str(backend.to_str()), str(auto.pad_token)


def _model_max_length(path: str) -> int:
    """sentence-transformers' max_seq_length: its config file, else the tokenizer's limit."""
    folder = Path(path)
    limit = _json(folder / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(limit, int):
        return limit
    limit = _json(folder / "tokenizer_config.json").get("model_max_length")
    return min(limit, 512) if isinstance(limit, int) else 512


def _json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
