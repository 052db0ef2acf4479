"""The index folder's layout and self-description: file names, manifest.json, atomic swap.

`manifest.json` says how the folder was built (model, dim, encoding, chunking, index type,
content hashes, package versions, build time); `manifest_differences` compares it with the
current settings. `swap_in` replaces a folder by a complete new one with renames only, and
`recover` puts back an index that a write killed between its two renames had moved aside.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from qa.config import Settings
from qa.errors import IndexMismatchError

log = logging.getLogger(__name__)

INDEX_FILE, VECTORS_FILE, DB_FILE, MANIFEST_FILE, BM25_DIR = (
    "index.faiss",
    "vectors.npy",
    "store.sqlite",
    "manifest.json",
    "bm25",
)
# Written by `qa calibrate`, not by an index build: a rebuild carries it over (FaissStore.write).
CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = 1
# Manifest field -> Settings field that must agree for an index to be usable.
COMPATIBLE_FIELDS = {
    "embedding_model": "embedding_model",
    "encoding": "encoding",
    "chunk_tokens": "chunk_tokens",
    "chunk_overlap": "chunk_overlap",
}
# Manifest fields an index must share with a build to be updated in place (else rebuilt fully);
# the embedding backend and dtype need only share a vector space (`vector_space_of`).
BUILD_FIELDS = (*COMPATIBLE_FIELDS, "dim", "format_version", "model_token_limit", "chunker")
_PACKAGES = {
    "qa": "qa",
    "faiss": "faiss-cpu",
    "sentence-transformers": "sentence-transformers",
    "torch": "torch",
    "tiktoken": "tiktoken",
}


def base_manifest(settings: Settings, *, model: str, dim: int, **extra: Any) -> dict[str, Any]:
    """The settings part of a manifest; `FaissStore.write` adds index, counts and versions."""
    return {
        "format_version": FORMAT_VERSION,
        "embedding_model": model,
        "embedding_backend": settings.embedding_backend,
        "embedding_dtype": settings.embedding_dtype,
        "dim": dim,
        "normalized": True,
        "encoding": settings.encoding,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        **extra,
    }


def manifest_differences(
    manifest: dict[str, Any], settings: Settings, *, dim: int | None = None
) -> list[tuple[str, Any, Any]]:
    """(field, value in the index, value now) for every setting the index disagrees with."""
    diffs = [
        (field, manifest.get(field), getattr(settings, attr))
        for field, attr in COMPATIBLE_FIELDS.items()
        if manifest.get(field) != getattr(settings, attr)
    ]
    if dim is not None and manifest.get("dim") != dim:
        diffs.append(("dim", manifest.get("dim"), dim))
    now = {
        "embedding_backend": settings.embedding_backend,
        "embedding_dtype": settings.embedding_dtype,
    }
    if vector_space_of(manifest) != vector_space_of(now):
        diffs.append(("embedding vector space", vector_space_of(manifest), vector_space_of(now)))
    if manifest.get("format_version") != FORMAT_VERSION:
        diffs.append(("format_version", manifest.get("format_version"), FORMAT_VERSION))
    return diffs


def build_differences(
    old: dict[str, Any], wanted: dict[str, Any] | Any
) -> list[tuple[str, Any, Any]]:
    """(field, in the index, in the build) for every field that stops an in-place update.

    Chunks are reused only if the same chunker with the same token limit would cut the same
    ones; vectors only if the same model, backend and dtype made them.
    """
    diffs = [
        (field, old.get(field), wanted.get(field))
        for field in BUILD_FIELDS
        if old.get(field) != wanted.get(field)
    ]
    if vector_space_of(old) != vector_space_of(wanted):
        diffs.append(("embedding vector space", vector_space_of(old), vector_space_of(wanted)))
    return diffs


def vector_space_of(manifest: dict[str, Any] | Any) -> str:
    """The vector space of an index's (or a build's) embedding backend and dtype.

    Backends whose vectors agree (cosine >= 0.99 on the same text; qa.embedding.backends) share
    one, so an index built by torch serves onnx questions. An index from before the backend was
    recorded was built by torch in float32; `auto` picks only backends of that space.
    """
    from qa.embedding.backends import vector_space

    backend = manifest.get("embedding_backend") or "torch"
    return vector_space(
        "torch" if backend == "auto" else backend, manifest.get("embedding_dtype") or "float32"
    )


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The manifest of the index at `index_dir`, or None when there is none."""
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise IndexMismatchError(
            f"The manifest {path} cannot be read ({exc}). Run `qa index --rebuild`."
        ) from None
    if not isinstance(manifest, dict):
        raise IndexMismatchError(
            f"The manifest {path} is not a JSON object. Run `qa index --rebuild`."
        )
    return manifest


def versions() -> dict[str, str | None]:
    from qa.resources import verifier_version

    # The answer verifier does not change the index, but an index names what it was served with.
    found: dict[str, str | None] = {"verifier": verifier_version()}
    for key, dist in _PACKAGES.items():
        try:
            found[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[key] = None
    return found


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _aside_name(index_dir: Path) -> str:
    return f".{index_dir.name}.old-"


def swap_in(new: Path, index_dir: Path) -> None:
    """Replace `index_dir` by `new` with renames only (the old one is removed last)."""
    if not index_dir.exists():
        new.rename(index_dir)
        return
    old = index_dir.with_name(f"{_aside_name(index_dir)}{uuid.uuid4().hex[:8]}")
    index_dir.rename(old)
    try:
        new.rename(index_dir)
    except BaseException:
        old.rename(index_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def recover(index_dir: Path) -> None:
    """Put back an index moved aside by a write that died between its two renames."""
    if index_dir.exists() or not index_dir.parent.is_dir():
        return
    aside = sorted(
        (
            p
            for p in index_dir.parent.glob(f"{_aside_name(index_dir)}*")
            if (p / MANIFEST_FILE).is_file()
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if aside:
        log.warning(
            "Restoring the index %s from %s (an earlier write was interrupted)",
            index_dir,
            aside[-1],
        )
        aside[-1].rename(index_dir)
