"""The BM25 keyword index of the Postgres store, kept in the database as a tar of its files.

`qa index` builds it over the same text as the FAISS store's (`embedding_text`) in the ingest's
transaction; every server (and replica) loads the same bytes.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qa.types import Chunk, embedding_text

if TYPE_CHECKING:
    from qa.stores.bm25 import Bm25Index


def build_bm25(chunks: Sequence[Chunk]) -> Bm25Index:
    """The BM25 index of the chunks, over the same text as the FAISS store's."""
    from qa.stores.bm25 import Bm25Index

    return Bm25Index.build([embedding_text(c) for c in chunks])


def pack_bm25(index: Bm25Index) -> bytes:
    """The index's saved files as an uncompressed tar."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="qa-bm25-") as tmp:
        index.save(Path(tmp))
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(Path(tmp).iterdir()):
                tar.add(path, arcname=path.name)
    return buf.getvalue()


def unpack_bm25(data: bytes) -> Bm25Index:
    """The index `pack_bm25` packed (loaded into memory)."""
    from qa.stores.bm25 import Bm25Index

    with tempfile.TemporaryDirectory(prefix="qa-bm25-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        return Bm25Index.load(Path(tmp))
