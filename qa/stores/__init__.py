"""Stores: where chunks, their vectors and their keyword index live once built.

`base` (the Store and IndexWriter protocols and the data ingest hands over), `folder` (the
self-describing manifest and the atomic folder swap), `bm25` (the keyword index both stores
build), `calibration` (the abstention threshold an index carries), `feedback` (served answers
and readers' feedback on them), `faiss/` (the index folder on one machine: FAISS + SQLite +
BM25) and `postgres/` (PostgreSQL + pgvector shared by many servers). Nothing here knows about
ingest, retrieval, answering or HTTP.

The functions below pick the implementation the settings name (imported on first use).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.stores.base import IndexWriter, Store
    from qa.stores.feedback import FeedbackStore


def open_store(settings: Settings) -> Store:
    """The store the settings name (IndexNotFoundError when there is no index yet)."""
    if settings.store == "postgres":
        from qa.stores.postgres.store import PostgresStore

        return PostgresStore.load(settings)
    from qa.stores.faiss.store import FaissStore

    return FaissStore.load(settings.index_dir, settings)


def index_version(settings: Settings, store: Store | None = None) -> object:
    """A cheap token that changes whenever the index is rewritten (None when there is none).

    The FAISS folder is swapped in whole, so its manifest file's inode and mtime change; the
    Postgres store bumps a generation number with every committed write (asked of `store`).
    """
    if settings.store == "postgres":
        generation = getattr(store, "generation", None)
        return generation() if callable(generation) else None
    from qa.stores.folder import MANIFEST_FILE

    try:
        info = (Path(settings.index_dir) / MANIFEST_FILE).stat()
    except FileNotFoundError:  # none yet, or between the two renames of a swap
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def open_feedback(settings: Settings) -> FeedbackStore:
    """Where the served answers and feedback of the settings' index live (made on first use):
    an SQLite file beside the FAISS folder, or tables in the Postgres schema."""
    if settings.store == "postgres":
        from qa.stores.postgres.feedback import PostgresFeedback

        return PostgresFeedback(settings)
    from qa.stores.feedback import SqliteFeedback, feedback_path

    return SqliteFeedback(
        feedback_path(settings.index_dir), retention_days=settings.served_answers_days
    )


def open_writer(
    settings: Settings, manifest: Mapping[str, Any], *, index_dir: Path, rebuild: bool = False
) -> IndexWriter:
    """The writer of the store the settings name, for a build described by `manifest`.

    `index_dir` is the FAISS index folder (the Postgres store keeps only its embedding cache
    beside it). With `rebuild`, the index is built from scratch whatever it holds.
    """
    if settings.store == "postgres":
        from qa.stores.postgres.sync import PostgresWriter

        return PostgresWriter(settings, manifest, rebuild=rebuild)
    from qa.stores.faiss.update import FaissWriter

    return FaissWriter(Path(index_dir), settings, manifest, rebuild=rebuild)
