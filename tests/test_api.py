"""The HTTP API over real uvicorn on a free loopback port, with the real model and index."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from qa.config import Settings
from qa.pipeline import Pipeline
from qa.resources import verifier_version
from qa.server.app import LOADING, app_state, create_app
from qa.server.run import load_in_background
from qa.server.timing import parse
from tests.conftest import DEMO_DOC_ID
from tests.server_utils import LiveServer, answering_alone, held, new_wording, wait_for

ANSWER_KEYS = {
    "answer_id", "question", "standalone_question", "answer", "short_answer", "abstained",
    "abstain_reason", "kind", "confidence", "citations", "passages", "answerer", "timings_ms",
}  # fmt: skip
DEMO = [  # (question, a gold answer the extractive answerer must contain)
    (
        "When did the National Network Information Office issue the Regulations on the "
        "Management of Blockchain Information Services?",
        "January 10, 2019",
    ),
    ("How many filing projects were in the first batch distributed?", "197"),
    ("From what date will the cryptography law be implemented?", "January 1, 2020"),
]


@pytest.fixture(scope="module")
def live(demo_settings: Settings, demo_pipeline: Pipeline) -> Iterator[LiveServer]:
    with LiveServer(create_app(demo_settings, pipeline=demo_pipeline)) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def alone(demo_pipeline: Pipeline) -> Pipeline:
    """The served index, nothing kept: the server's answers are compared with it, never with
    the served pipeline, which keeps what the server was asked."""
    return answering_alone(demo_pipeline)


def no_timings(body: dict[str, Any]) -> dict[str, Any]:
    """The Answer JSON without what differs per serving: its timings and its answer_id."""
    return {k: v for k, v in body.items() if k not in ("timings_ms", "answer_id")}


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """The (event, parsed data) pairs of a text/event-stream body."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# -- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("question", "gold"), DEMO)
def test_ask_cites_exact_spans(client: httpx.Client, question: str, gold: str) -> None:
    r = client.post("/ask", json={"question": question})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == ANSWER_KEYS
    assert body["abstained"] is False
    assert gold in body["answer"]
    assert body["answerer"] == "extractive"
    assert set(body["timings_ms"]) >= {"retrieve", "answer", "total"}
    assert body["citations"]
    for c in body["citations"]:
        assert f"[{c['n']}]" in body["answer"]
        doc = client.get(f"/documents/{c['doc_id']}").json()
        assert doc["text"][c["start"] : c["end"]] == c["quote"]
        span = client.get(
            f"/documents/{c['doc_id']}", params={"start": c["start"], "end": c["end"]}
        ).json()["highlight"]
        assert span == {"start": c["start"], "end": c["end"], "text": c["quote"]}


def test_ask_is_the_pipeline_answer(client: httpx.Client, alone: Pipeline) -> None:
    question = new_wording(DEMO[0][0], 1)  # new to the server: answered, not recalled
    r = client.post("/ask", json={"question": question, "top_k": 3})
    assert set(parse(r.headers["server-timing"])) == {"queue", "work", "total"}
    body = no_timings(r.json())
    assert body == no_timings(alone.ask(question, top_k=3).to_dict())
    assert [p["n"] for p in body["passages"]] == [1, 2, 3]
    assert DEMO[0][1] in body["answer"]


def test_server_timing_says_where_the_time_went(
    demo_settings: Settings, demo_pipeline: Pipeline
) -> None:
    app = create_app(demo_settings, pipeline=demo_pipeline)
    gate = app_state(app).gate
    question = new_wording(DEMO[1][0], 2)  # new to this server: it runs on a worker
    with (
        LiveServer(app) as live,
        httpx.Client(base_url=live.url, timeout=60) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        with held(gate):  # every worker busy: the request waits in the queue
            queued = pool.submit(client.post, "/ask", json={"question": question})
            wait_for(lambda: gate.pending == gate.workers + 1, what="the request to be queued")
            t_queued = time.perf_counter()
            time.sleep(0.2)
            held_ms = (time.perf_counter() - t_queued) * 1000
        r = queued.result(timeout=60)
        spans = parse(r.headers["server-timing"])
        assert set(spans) == {"queue", "work", "total"}
        assert spans["queue"] >= held_ms  # it waited at least while the workers were held
        assert spans["queue"] + spans["work"] <= spans["total"] + 0.2  # rounding: 0.1 each
        assert spans["work"] >= r.json()["timings_ms"]["total"] - 0.1  # the pipeline ran there
        # Asked again, its kept answer is given without a worker (`recall`).
        again = parse(client.post("/ask", json={"question": question}).headers["server-timing"])
        assert set(again) == {"recall", "total"} and again["recall"] <= again["total"]
        # Requests with no worker step (and refusals) carry the total alone.
        assert set(parse(client.get("/healthz").headers["server-timing"])) == {"total"}
        assert "total;dur=" in client.post("/ask", json={}).headers["server-timing"]


def test_follow_up_uses_history(client: httpx.Client, alone: Pipeline) -> None:
    history = [
        {"role": "user", "content": "What did the National Network Information Office issue?"},
        {"role": "assistant", "content": "The Regulations on blockchain information services."},
    ]
    body = client.post("/ask", json={"question": "When?", "history": history}).json()
    assert body["question"] == "When?"
    # The earlier question's key words carried along (qa.answering.followup), and the answer is
    # the one that standalone question gets.
    standalone = "When (National Network Information Office issue)?"
    assert body["standalone_question"] == standalone
    expected = no_timings(alone.ask(standalone).to_dict())
    assert no_timings(body) == {**expected, "question": "When?"}


def test_stream_event_order(client: httpx.Client) -> None:
    question, gold = DEMO[1]
    r = client.post("/ask/stream", json={"question": question})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "passages" and kinds[-1] == "answer"
    assert set(kinds[1:-1]) == {"delta"} and len(kinds) >= 3
    answer = events[-1][1]
    assert set(answer) == ANSWER_KEYS
    assert "".join(data["text"] for kind, data in events if kind == "delta") == answer["answer"]
    assert events[0][1] == answer["passages"]
    assert gold in answer["answer"]


def test_search_matches_cli_json(client: httpx.Client, alone: Pipeline) -> None:
    r = client.get("/search", params={"q": "cryptography law", "k": 2})
    assert r.status_code == 200
    expected = [p.to_dict() for p in alone.search("cryptography law", k=2)]
    assert r.json() == {"question": "cryptography law", "passages": expected}


def test_document_and_health(client: httpx.Client, demo_pipeline: Pipeline) -> None:
    doc = client.get(f"/documents/{DEMO_DOC_ID}").json()
    source = demo_pipeline.document(DEMO_DOC_ID)
    assert doc == {
        "id": source.id, "title": source.title, "text": source.text, "source": source.source,
        "pages": [], "highlight": None,
    }  # fmt: skip
    assert client.get("/healthz").json() == {"status": "ok"}
    wait_for(
        lambda: client.get("/readyz").json()["warming_sentences"] is False,
        what="/readyz to report the warm-up done",
        timeout=300,
    )
    ready = client.get("/readyz").json()
    # How many sentences warm-up read back or embedded depends on what earlier tests left in
    # the shared pipeline (tests/test_warmup.py checks the count on a fresh index); done, it
    # leaves the answerer no sentence of the index to embed.
    assert ready.pop("warming_sentences") is False
    assert type(ready.pop("warmed_sentences")) is int
    answerer: Any = demo_pipeline.answerer()
    assert answerer.warm_texts(demo_pipeline.store.chunks(), limit=10**6) == []
    assert ready == {
        "status": "ready", "documents": 1, "chunks": demo_pipeline.store.n_chunks,
        "model": "all-MiniLM-L6-v2", "answerer": "extractive",
        "embedding_backend": demo_pipeline.settings.embedding_backend,
        "embedding_dtype": "float32", "embedding_backend_reason": demo_pipeline.backend_reason,
        "verifier": verifier_version(),
    }  # fmt: skip
    # The default is auto: /readyz says what it chose and why.
    assert ready["embedding_backend"] in ("onnx", "torch")
    assert ready["embedding_backend_reason"].startswith("auto: ")


def test_concurrent_requests_share_the_model(live: LiveServer, alone: Pipeline) -> None:
    """8 questions new to the server at once: each is retrieved and answered on a worker with
    the one shared model (none is a kept answer), and each gets the answer it gets alone."""
    asked = [(new_wording(q, 100 + i), gold) for i, (q, gold) in enumerate(DEMO * 3)][:8]
    start = threading.Barrier(len(asked))
    responses: dict[str, httpx.Response] = {}

    def one(question: str) -> None:
        with httpx.Client(base_url=live.url, timeout=120) as c:
            start.wait(timeout=30)
            responses[question] = c.post("/ask", json={"question": question})

    threads = [threading.Thread(target=one, args=(q,)) for q, _ in asked]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(responses) == len(asked)
    for question, gold in asked:
        r = responses[question]
        assert r.status_code == 200, r.text
        assert set(parse(r.headers["server-timing"])) == {"queue", "work", "total"}, question
        body = no_timings(r.json())
        assert gold in body["answer"], body
        assert body == no_timings(alone.ask(question).to_dict())


def test_openapi_documents_examples(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["AnswerOut"]["examples"][0]["citations"][0]["quote"]
    assert schemas["AskIn"]["examples"][0]["question"]
    assert set(spec["paths"]) >= {"/ask", "/ask/stream", "/search", "/documents/{doc_id}"}
    # FastAPI's /docs and /redoc would load Swagger UI and ReDoc from a CDN: blank offline.
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404


# -- bad input ------------------------------------------------------------------------------

LONG = "x" * 2001
BAD = [
    ("post", "/ask", {"json": {"question": ""}}, 422, "The question is empty"),
    ("post", "/ask", {"json": {"question": " \n\t "}}, 422, "The question is empty"),
    ("post", "/ask", {"json": {"question": LONG}}, 422, "the limit is 2000 (setting max_question"),
    ("post", "/ask", {"content": b'{"question": '}, 422, "the body is not valid JSON"),
    ("post", "/ask", {"json": {"question": 5}}, 422, "question: Input should be a valid string"),
    ("post", "/ask", {"json": {"question": "a?", "top_k": "many"}}, 422, "top_k: Input should"),
    ("post", "/ask", {"json": {"question": "a?", "top_k": 0}}, 422, "top_k: Input should be"),
    ("post", "/ask", {"json": {"question": "a?", "history": [{"role": "x", "content": "c"}]}},
     422, "history.0.role: Input should be 'user' or 'assistant'"),
    ("post", "/ask", {"json": {"query": "a?"}}, 422, "question: Field required"),
    ("post", "/ask", {"json": ["a?"]}, 422, "Input should be a valid dictionary"),
    ("post", "/ask", {}, 422, "the body is missing"),
    ("post", "/ask", {"json": {"question": "a?", "answerer": "nope"}}, 400,
     "Unknown answerer 'nope'. Available: extractive, openai-chat."),
    ("post", "/ask/stream", {"json": {"question": "  "}}, 422, "The question is empty"),
    ("post", "/ask/stream", {"json": {"question": LONG}}, 422, "the limit is 2000"),
    ("post", "/ask/stream", {"json": {"question": "a?", "answerer": "nope"}}, 400,
     "Unknown answerer 'nope'. Available: extractive, openai-chat."),
    ("get", "/search", {"params": {"q": "   "}}, 422, "The question is empty"),
    ("get", "/search", {}, 422, "query q: Field required"),
    ("get", "/search", {"params": {"q": "a", "k": "x"}}, 422, "query k: Input should be"),
    ("get", "/documents/nope.txt", {}, 404, "No document 'nope.txt' in the index"),
    ("get", f"/documents/{DEMO_DOC_ID}", {"params": {"start": 5}}, 422, "Give both start and end"),
    ("get", f"/documents/{DEMO_DOC_ID}", {"params": {"start": 5, "end": 10**6}}, 422,
     "is out of range for document"),
    ("get", f"/documents/{DEMO_DOC_ID}", {"params": {"start": 9, "end": 3}}, 422, "out of range"),
    ("get", f"/documents/{DEMO_DOC_ID}", {"params": {"start": -1, "end": 3}}, 422,
     "query start: Input should be greater than or equal to 0"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "detail"), BAD)
def test_bad_input(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int, detail: str
) -> None:
    headers = {"content-type": "application/json"} if "content" in kwargs else None
    r = client.request(method.upper(), path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert detail in r.json()["detail"]


def test_body_over_the_limit_is_refused_before_parsing(client: httpx.Client) -> None:
    big = json.dumps({"question": "a?", "history": [{"role": "user", "content": "y" * 70_000}]})
    r = client.post("/ask", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("The request body is over the limit of 65536 bytes")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the bytes are counted as they come
        for _ in range(20):
            yield b"x" * 8192

    r = client.post("/ask", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413


# -- readiness, failures, access control --------------------------------------------------


def test_readyz_is_503_until_loaded(demo_settings: Settings) -> None:
    app = create_app(demo_settings)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert (r.status_code, r.json()) == (503, {"detail": LOADING})
        r = c.post("/ask", json={"question": "When?"})
        assert (r.status_code, r.json()["detail"]) == (503, LOADING)
        load_in_background(app, demo_settings, build_if_missing=False)
        wait_for(lambda: c.get("/readyz").status_code == 200, what="/readyz")
        assert c.get("/readyz").json()["documents"] == 1
        assert c.post("/ask", json={"question": DEMO[0][0]}).status_code == 200


def test_no_index_and_no_corpus_is_503_saying_what_to_do(tmp_path: Any) -> None:
    from qa.config import load_settings

    settings = load_settings(
        corpus_dir=tmp_path / "missing", index_dir=tmp_path / "index", _env_file=None
    )
    app = create_app(settings)
    load_in_background(app, settings).join(timeout=120)
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert f"Corpus folder {tmp_path / 'missing'}/ does not exist" in r.json()["detail"]
        assert r.json()["detail"].endswith("Then restart `qa serve`.")
        r = c.post("/ask", json={"question": "Anything?"})
        assert (r.status_code, r.json()) == (503, {"detail": app_state(app).reason})


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port that accepts connections (the kernel queues them) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.mark.parametrize(("mode", "status", "detail"), [("down", 502, ""), ("mute", 504, "")])
def test_llm_backend_failures(
    demo_settings: Settings,
    demo_pipeline: Pipeline,
    dead_port: int,
    mode: str,
    status: int,
    detail: str,
) -> None:
    if mode == "down":
        with socket.socket() as s:  # bound then closed: nothing listens there
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    else:
        port = dead_port
    url = f"http://127.0.0.1:{port}/v1"
    settings = demo_settings.model_copy(
        update={"llm_base_url": url, "llm_timeout": 1.0, "llm_max_retries": 0}
    )
    pipeline = Pipeline(settings, store=demo_pipeline.store, embedder=demo_pipeline.embedder)
    body = {"question": DEMO[0][0], "answerer": "openai-chat"}
    app = create_app(settings, pipeline=pipeline)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/ask", json=body)
        assert r.status_code == status, r.text
        assert f"127.0.0.1:{port}" in r.json()["detail"]
        r = c.post("/ask/stream", json=body)  # fails after the passages were sent
        events = sse_events(r)
        assert [kind for kind, _ in events] == ["passages", "error"]
        assert events[1][1]["status"] == status
        assert f"127.0.0.1:{port}" in events[1][1]["detail"]


def test_api_key(
    demo_settings: Settings, demo_pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = demo_settings.model_copy(update={"api_key": SecretStr("s3cret-key")})
    app = create_app(settings, pipeline=demo_pipeline)
    protected = [
        ("POST", "/ask", {"json": {"question": DEMO[0][0]}}),
        ("POST", "/ask/stream", {"json": {"question": DEMO[0][0]}}),
        ("GET", "/search", {"params": {"q": "law"}}),
        ("GET", f"/documents/{DEMO_DOC_ID}", {}),
        ("GET", "/answerers", {}),
    ]
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        for path in ("/healthz", "/readyz", "/", "/static/app.js", f"/view/{DEMO_DOC_ID}"):
            assert c.get(path).status_code == 200, path
        for method, path, kwargs in protected:
            r = c.request(method, path, **kwargs)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
            assert "needs an API key" in r.json()["detail"]
            wrong = {"Authorization": "Bearer s3cret-kez"}
            r = c.request(method, path, headers=wrong, **kwargs)
            assert (r.status_code, r.json()["detail"][:13]) == (401, "Wrong API key")
            right = {"Authorization": "Bearer s3cret-key"}
            assert c.request(method, path, headers=right, **kwargs).status_code == 200
    assert "s3cret" not in caplog.text
