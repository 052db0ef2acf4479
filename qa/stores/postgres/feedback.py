"""The Postgres store's feedback: `served_answers` and `feedback` tables in its schema.

Every replica writes to the primary (database_url, never the read replica), so an answer served
by one server can be rated through another, and `qa feedback export` sees all of it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qa.config import Settings
from qa.stores.feedback import SCHEMA, FeedbackStore
from qa.stores.postgres.schema import check_schema_name, connect, database_errors, require_dsn

if TYPE_CHECKING:
    import psycopg

# Advisory-lock key of the table creation: replicas starting together must not race on it.
_LOCK = "qa-feedback"


class PostgresFeedback(FeedbackStore):
    """Feedback in PostgreSQL: one connection, serialised (writes are one small row each)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.served_answers_days)
        self.settings = settings
        self._dsn = require_dsn(settings)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock, database_errors(self._dsn, "database_url"):
            conn = self._connection()
            from psycopg import sql

            schema = check_schema_name(settings.pg_schema)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
                for statement in SCHEMA:
                    conn.execute(statement)  # fixed text, no input
        self.prune()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn, self.settings, setting="database_url")
        return self._conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        query = sql.replace("?", "%s")
        with self._lock, database_errors(self._dsn, "database_url"):
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    cursor = conn.execute(query, tuple(params))
                    return cursor.fetchall() if cursor.description else []
                except psycopg.OperationalError:
                    conn.close()  # a dropped connection: once more on a new one
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
