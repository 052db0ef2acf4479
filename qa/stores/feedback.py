"""Served answers and the feedback on them, kept durably beside the index.

A server records every answer it serves (`record`: a fresh `answer_id`, the question, the
standalone question, the Answer JSON, the index version, the time), so `POST /feedback` can name
an answer later, after a restart, or on another replica. Feedback is one record per answer: a new
judgement of the same answer replaces the old one. Served answers nobody rated are dropped after
`served_answers_days`; feedback stays until deleted.

Where it lives: for the FAISS store an SQLite file in WAL mode beside the index folder
(`<index>.feedback.sqlite`: the folder itself is swapped whole by a rebuild); for the Postgres
store two tables in its schema, so every replica writes to one place
(`qa.stores.postgres.feedback`).
`qa feedback export`, `qa eval --feedback` and `qa calibrate --feedback` read the same place;
`qa.stores.open_feedback` picks the back end.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.errors import AnswerNotFoundError, DatabaseError, FeedbackNotFoundError
from qa.types import Answer, Evidence, Feedback, FeedbackKind, Rating, ServedAnswer

if TYPE_CHECKING:
    from qa.stores.base import Store

# Both back ends run the same statements; `?` placeholders become `%s` for PostgreSQL.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS served_answers (answer_id text PRIMARY KEY, question text NOT "
    "NULL, standalone_question text NOT NULL, answer_json text NOT NULL, index_version text NOT "
    "NULL, served_at text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS served_answers_at ON served_answers (served_at)",
    "CREATE TABLE IF NOT EXISTS feedback (feedback_id text PRIMARY KEY, answer_id text NOT NULL "
    "UNIQUE REFERENCES served_answers (answer_id) ON DELETE CASCADE, rating text NOT NULL, kind "
    "text, correction text, evidence_doc text, evidence_start integer, evidence_end integer, "
    "evidence_text text, created_at text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS feedback_at ON feedback (created_at)",
)
_COLUMNS = (
    "f.feedback_id, f.rating, f.kind, f.correction, f.evidence_doc, f.evidence_start, "
    "f.evidence_end, f.evidence_text, f.created_at, s.answer_id, s.question, "
    "s.standalone_question, s.answer_json, s.index_version, s.served_at"
)
_FROM = "FROM feedback f JOIN served_answers s ON s.answer_id = f.answer_id"
# Old unrated answers are dropped once per this many recorded (and when the store opens).
_PRUNE_EVERY = 500


def now() -> str:
    """The current UTC time as stored (ISO 8601, milliseconds: sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def feedback_path(index_dir: Path) -> Path:
    """The SQLite file of a FAISS index folder's feedback: beside the folder, not in it."""
    index_dir = Path(index_dir)
    return index_dir.with_name(f"{index_dir.name}.feedback.sqlite")


def index_version_label(store: Store) -> str:
    """What names the index an answer came from: the Postgres generation, or the build time."""
    generation = getattr(store, "generation", None)
    if callable(generation):
        return f"generation {generation()}"
    manifest = getattr(store, "manifest", None)
    built = manifest.get("built_at") if isinstance(manifest, dict) else None
    return f"built {built}" if built else "unknown"


class FeedbackStore(ABC):
    """Served answers and their feedback; safe to use from many threads."""

    def __init__(self, retention_days: int) -> None:
        self.retention = timedelta(days=retention_days)
        self._recorded = 0

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (committed) and return its rows."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    # -- served answers -----------------------------------------------------------------

    def record(self, answer: Answer, *, index_version: str) -> Answer:
        """`answer` with a new answer_id, recorded so feedback can name it."""
        import dataclasses

        answer = dataclasses.replace(answer, answer_id=uuid.uuid4().hex)
        data = answer.to_dict()
        data.pop("explain", None)  # the per-candidate scores are large and not the answer
        self._rows(
            "INSERT INTO served_answers VALUES (?, ?, ?, ?, ?, ?)",
            (
                answer.answer_id,
                answer.question,
                data["standalone_question"],
                json.dumps(data, ensure_ascii=False),
                index_version,
                now(),
            ),
        )
        self._recorded += 1
        if self._recorded % _PRUNE_EVERY == 0:
            self.prune()
        return answer

    def served(self, answer_id: str) -> ServedAnswer:
        """The served answer `answer_id` (AnswerNotFoundError when unknown or dropped)."""
        rows = self._rows("SELECT * FROM served_answers WHERE answer_id = ?", (answer_id,))
        if not rows:
            raise AnswerNotFoundError(
                f"No served answer with answer_id {answer_id!r}: it was never served here, or "
                "it is older than served_answers_days. Rate an answer from POST /ask, "
                "/ask/stream, /v1/chat/completions (its `qa` field) or MCP."
            )
        return ServedAnswer(*rows[0])

    def prune(self) -> int:
        """Drop served answers older than the retention that nobody rated; how many went."""
        cutoff = (datetime.now(UTC) - self.retention).isoformat(timespec="milliseconds")
        rows = self._rows(
            "DELETE FROM served_answers WHERE served_at < ? AND answer_id NOT IN "
            "(SELECT answer_id FROM feedback) RETURNING answer_id",
            (cutoff,),
        )
        return len(rows)

    # -- feedback -----------------------------------------------------------------------

    def rate(
        self,
        answer_id: str,
        *,
        rating: Rating,
        kind: FeedbackKind | None = None,
        correction: str | None = None,
        evidence: Evidence | None = None,
    ) -> Feedback:
        """Record (or replace) the feedback on `answer_id`; the record as stored."""
        self.served(answer_id)  # a clear 404 before anything is written
        ev = evidence
        rows = self._rows(
            "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id) "
            "DO UPDATE SET rating = excluded.rating, kind = excluded.kind, correction = "
            "excluded.correction, evidence_doc = excluded.evidence_doc, evidence_start = "
            "excluded.evidence_start, evidence_end = excluded.evidence_end, evidence_text = "
            "excluded.evidence_text, created_at = excluded.created_at RETURNING feedback_id",
            (
                uuid.uuid4().hex,
                answer_id,
                rating,
                kind,
                correction,
                ev and ev.doc_id,
                ev and ev.start,
                ev and ev.end,
                ev and ev.text,
                now(),
            ),
        )
        return self.get(str(rows[0][0]))

    def get(self, feedback_id: str) -> Feedback:
        """One feedback record (FeedbackNotFoundError when unknown)."""
        rows = self._rows(f"SELECT {_COLUMNS} {_FROM} WHERE f.feedback_id = ?", (feedback_id,))
        if not rows:
            raise FeedbackNotFoundError(
                f"No feedback with feedback_id {feedback_id!r}. GET /feedback lists them."
            )
        return _feedback(rows[0])

    def query(
        self,
        *,
        kind: FeedbackKind | None = None,
        rating: Rating | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[tuple[Feedback, ...], int]:
        """Feedback oldest first (a page of it), and how many match in all."""
        where, params = _filters(kind, rating)
        total = int(self._rows(f"SELECT count(*) {_FROM}{where}", params)[0][0])
        page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
        rows = self._rows(
            f"SELECT {_COLUMNS} {_FROM}{where} ORDER BY f.created_at, f.feedback_id{page}", params
        )
        return tuple(_feedback(r) for r in rows), total

    def delete(self, feedback_id: str) -> None:
        """Remove one feedback record (FeedbackNotFoundError when unknown)."""
        rows = self._rows(
            "DELETE FROM feedback WHERE feedback_id = ? RETURNING feedback_id", (feedback_id,)
        )
        if not rows:
            self.get(feedback_id)  # raises the 404 with its message


def _filters(kind: str | None, rating: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if kind is not None:
        clauses.append("f.kind = ?")
        params.append(kind)
    if rating is not None:
        clauses.append("f.rating = ?")
        params.append(rating)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _feedback(row: Sequence[Any]) -> Feedback:
    fid, rating, kind, correction, doc, start, end, text, created = row[:9]
    evidence = None if doc is None else Evidence(str(doc), int(start), int(end), str(text))
    return Feedback(fid, rating, kind, correction, evidence, created, ServedAnswer(*row[9:]))


class SqliteFeedback(FeedbackStore):
    """The FAISS store's feedback: one SQLite file in WAL mode (readers never block writers)."""

    def __init__(self, path: Path, *, retention_days: int = 30) -> None:
        super().__init__(retention_days)
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL survives a crash or kill of the server (only a power cut can
            # lose the last commits) and spares every served answer an fsync.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute("PRAGMA busy_timeout=10000")  # another process (qa feedback)
            for statement in SCHEMA:
                self._conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseError(
                f"Cannot open the feedback file {self.path}: {exc}. Check that its folder is "
                "writable (it sits beside the index folder)."
            ) from None
        self.prune()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                raise DatabaseError(f"The feedback file {self.path} failed: {exc}.") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
