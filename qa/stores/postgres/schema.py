"""PostgreSQL plumbing of the pgvector store: connections, error mapping, the versioned schema.

Everything lives in one Postgres schema (setting `pg_schema`, default `qa`), so one database
can hold several indexes (the eval sets use their own):

    meta           key -> jsonb: schema_version, generation (bumped by every committed ingest)
    manifest       one row: how the index was built (model, dim, encoding, chunking, counts ...)
    keyword_index  one row: the BM25 index of the chunk texts (a tar of qa.stores.bm25 files) + ids
    documents      id, title, source, text, content_hash, pages
    chunks         id, doc_id, seq, title, text, start, end, n_tokens, page,
                   embedding vector(dim) [HNSW, vector_ip_ops], tsv tsvector [GIN]

`documents` and `chunks` are created by the first ingest (the vector dimension comes from the
model), the rest by `ensure_schema`. A database password never reaches a log or a message:
locations are shown as user@host:port/dbname.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from qa.config import Settings
from qa.errors import ConfigError, DatabaseError, IndexMismatchError, IndexNotFoundError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Full-text configuration of the generated tsvector and of keyword queries.
TEXT_CONFIG = "english"
# Advisory-lock class id of `qa index` ("qa" in ASCII); the second key is the schema's hash.
_LOCK_CLASS = 0x7161
# Schema version -> statements that bring the previous version to it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS manifest (id int PRIMARY KEY CHECK (id = 1), "
        "data jsonb NOT NULL)",
        "CREATE TABLE IF NOT EXISTS keyword_index (id int PRIMARY KEY CHECK (id = 1), "
        "generation bigint NOT NULL, chunk_ids text[] NOT NULL, data bytea NOT NULL)",
    ),
}


def require_dsn(settings: Settings, *, replica: bool = False) -> SecretStr:
    """The DSN to use (the replica's for reads when one is set); ConfigError when unset."""
    if replica and settings.database_replica_url is not None:
        return settings.database_replica_url
    if settings.database_url is None:
        raise ConfigError(
            "store=postgres needs a database: set database_url (--database-url or "
            "QA_DATABASE_URL), e.g. postgresql://user@host:5432/dbname."
        )
    return settings.database_url


def describe(dsn: SecretStr) -> str:
    """user@host:port/dbname of a DSN, without its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn.get_secret_value())
    except Exception:  # a malformed DSN: say so without echoing it
        return "<unparsable database URL>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    return f"{user}{host}:{parts.get('port') or 5432}/{parts.get('dbname') or user.rstrip('@')}"


def scrub(message: object, dsn: SecretStr) -> str:
    """`message` with the DSN's password (if any) masked."""
    from psycopg.conninfo import conninfo_to_dict

    text = str(message).strip()
    try:
        password = conninfo_to_dict(dsn.get_secret_value()).get("password")
    except Exception:
        password = None
    return text.replace(str(password), "***") if password else text


def check_schema_name(name: str) -> str:
    if not name.isidentifier() or not name.isascii() or name != name.lower() or len(name) > 63:
        raise ConfigError(
            f"pg_schema {name!r} is not a plain lower-case SQL identifier; "
            "use letters, digits and _ (e.g. qa)."
        )
    return name


def connect(
    dsn: SecretStr, settings: Settings, *, setting: str, application: str = "qa"
) -> psycopg.Connection[Any]:
    """An autocommit connection with search_path = the qa schema, public; DatabaseError if not."""
    import psycopg
    from psycopg import sql

    schema = check_schema_name(settings.pg_schema)
    try:
        conn = psycopg.connect(
            dsn.get_secret_value(),
            autocommit=True,
            connect_timeout=10,
            application_name=application,
        )
    except psycopg.Error as exc:
        raise DatabaseError(
            f"Cannot connect to PostgreSQL at {describe(dsn)} (setting {setting}): "
            f"{scrub(exc, dsn)}. Check that the server runs and the setting is right."
        ) from None
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    return conn


def register_vector(conn: psycopg.Connection[Any], where: str) -> None:
    """Teach the connection pgvector's type (numpy arrays in and out)."""
    import psycopg
    from pgvector.psycopg import register_vector as register

    try:
        register(conn)
    except psycopg.ProgrammingError:
        raise DatabaseError(
            f"The pgvector extension is not installed in {where}. Run `qa index --store "
            "postgres` (it runs CREATE EXTENSION vector), or ask an administrator to."
        ) from None


@contextmanager
def database_errors(dsn: SecretStr, setting: str) -> Iterator[None]:
    """Turn psycopg errors raised inside into DatabaseError (password masked)."""
    import psycopg

    try:
        yield
    except psycopg.errors.ReadOnlySqlTransaction:
        raise DatabaseError(
            f"The PostgreSQL server at {describe(dsn)} (setting {setting}) is a read-only "
            "standby. Point database_url at the primary; replicas go in database_replica_url."
        ) from None
    except psycopg.errors.UndefinedTable:
        raise IndexNotFoundError(
            f"The qa tables are missing in {describe(dsn)} (setting {setting}). "
            "Run `qa index --store postgres` with the same --database-url and --pg-schema."
        ) from None
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"The PostgreSQL server at {describe(dsn)} (setting {setting}) failed: "
            f"{scrub(exc, dsn)}. Check that it runs, then retry."
        ) from None


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version of the qa schema, or None when it has not been created."""
    row = conn.execute(
        "SELECT to_regclass('meta') IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM pg_namespace WHERE nspname = current_schema())"
    ).fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(found[0]) if found else None


def ensure_schema(conn: psycopg.Connection[Any], settings: Settings, where: str) -> None:
    """Create the qa schema and the pgvector extension, or migrate them to SCHEMA_VERSION."""
    import psycopg
    from psycopg import sql

    schema = check_schema_name(settings.pg_schema)
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value jsonb NOT NULL)"
            )
            # Serialise concurrent migrations of the same schema.
            conn.execute("LOCK TABLE meta IN EXCLUSIVE MODE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise IndexMismatchError(
                    f"The qa schema {schema!r} in {where} has version {version}, newer than this "
                    f"qa understands ({SCHEMA_VERSION}). Upgrade qa."
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    conn.execute(statement)
                log.info("Migrated the qa schema %r in %s to version %d", schema, where, step)
            conn.execute(
                "INSERT INTO meta VALUES ('schema_version', to_jsonb(%s::int)), "
                "('generation', '0') ON CONFLICT (key) DO UPDATE SET value = CASE "
                "WHEN meta.key = 'schema_version' THEN excluded.value ELSE meta.value END",
                (SCHEMA_VERSION,),
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(
            f"Not allowed to create the qa schema in {where}: {exc}. Ask an administrator "
            "to run `CREATE EXTENSION vector` and grant CREATE on the database."
        ) from None
    register_vector(conn, where)


@contextmanager
def index_lock(conn: psycopg.Connection[Any], settings: Settings, where: str) -> Iterator[None]:
    """Hold the advisory lock that serialises `qa index` runs on this schema (waits for it)."""
    key = (_LOCK_CLASS, settings.pg_schema)
    got = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchone()
    if not got or not got[0]:
        log.warning(
            "Another `qa index` is writing to %s (schema %s); waiting for it to finish ...",
            where,
            settings.pg_schema,
        )
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
        log.warning("The other `qa index` finished; continuing.")
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


def create_corpus_tables(
    conn: psycopg.Connection[Any], *, suffix: str, gen: int, dim: int, settings: Settings
) -> None:
    """documents{suffix} and chunks{suffix}, without their search indexes (built after COPY)."""
    conn.execute(
        f'CREATE TABLE documents{suffix} (id text COLLATE "C" CONSTRAINT documents_pk_{gen} '
        "PRIMARY KEY, title text NOT NULL, source text NOT NULL, text text NOT NULL, "
        "content_hash text NOT NULL, pages int[] NOT NULL)"
    )
    conn.execute(
        f'CREATE TABLE chunks{suffix} (id text COLLATE "C" CONSTRAINT chunks_pk_{gen} PRIMARY '
        f'KEY, doc_id text COLLATE "C" NOT NULL CONSTRAINT chunks_doc_{gen} REFERENCES '
        f"documents{suffix} (id) ON DELETE CASCADE, seq int NOT NULL, title text NOT NULL, "
        'text text NOT NULL, start int NOT NULL, "end" int NOT NULL, n_tokens int NOT NULL, '
        f"page int, embedding vector({int(dim)}) NOT NULL, tsv tsvector GENERATED ALWAYS AS "
        f"(to_tsvector('{TEXT_CONFIG}', title || ' ' || text)) STORED)"
    )


def create_search_indexes(
    conn: psycopg.Connection[Any], *, suffix: str, gen: int, settings: Settings
) -> dict[str, Any]:
    """The doc, HNSW and GIN indexes of chunks{suffix}; returns the manifest's index info."""
    m = settings.hnsw_m
    ef_construction = max(64, 2 * m)
    conn.execute(f"CREATE INDEX chunks_doc_seq_{gen} ON chunks{suffix} (doc_id, seq)")
    conn.execute(
        f"CREATE INDEX chunks_hnsw_{gen} ON chunks{suffix} USING hnsw (embedding vector_ip_ops) "
        f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
    )
    conn.execute(f"CREATE INDEX chunks_tsv_{gen} ON chunks{suffix} USING gin (tsv)")
    return {
        "type": "hnsw",
        "engine": "pgvector",
        "params": {"M": m, "efConstruction": ef_construction},
        "requested": settings.index_type,
        "text_config": TEXT_CONFIG,
    }
