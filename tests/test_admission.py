"""Admission control over real uvicorn: one worker per core, arrival order, a bounded queue.

Deterministic, no timing: the app is created while this thread may run on one core only, so
its gate has one worker; the test occupies that worker with a job it holds on an Event, fills
the queue with real requests (waiting until the gate counts each one), and only then sends the
request that must be shed.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from qa.config import Settings, cpu_cores
from qa.pipeline import Pipeline
from qa.server.admission import Gate, Overloaded
from qa.server.app import app_state, create_app
from qa.types import Answer
from tests.server_utils import LiveServer, held, wait_for

QUESTION = "How many filing projects were in the first batch distributed?"


class RecordingPipeline(Pipeline):
    """The demo pipeline, noting the order in which questions start to be answered."""

    started: list[str]

    def ask(self, question: str, **kwargs: Any) -> Answer:
        self.started.append(question)
        return super().ask(question, **kwargs)


def one_core_app(settings: Settings, pipeline: Pipeline) -> FastAPI:
    """The app, created while this thread may use a single core: its gate gets one worker."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        app = create_app(settings, pipeline=pipeline)
    finally:
        os.sched_setaffinity(0, saved)
    assert app_state(app).gate.workers == 1
    return app


def post_in_background(
    pool: ThreadPoolExecutor, url: str, path: str, body: dict[str, Any]
) -> Future[httpx.Response]:
    return pool.submit(httpx.post, url + path, json=body, timeout=120)


@pytest.fixture
def recording(demo_settings: Settings, demo_pipeline: Pipeline) -> RecordingPipeline:
    pipeline = RecordingPipeline(
        demo_pipeline.settings, store=demo_pipeline.store, embedder=demo_pipeline.embedder
    )
    pipeline.started = []
    return pipeline


def test_workers_follow_the_cores_this_process_may_use() -> None:
    assert cpu_cores() == len(os.sched_getaffinity(0))


def test_full_queue_sheds_with_503_and_retry_after(
    demo_settings: Settings, recording: RecordingPipeline
) -> None:
    settings = demo_settings.model_copy(update={"queue_limit": 1, "retry_after": 7})
    app = one_core_app(settings, recording)
    gate = app_state(app).gate
    with LiveServer(app) as live, ThreadPoolExecutor(2) as pool, held(gate) as release:
        queued = post_in_background(pool, live.url, "/ask", {"question": QUESTION})
        wait_for(lambda: gate.pending == 2, what="the first request to be queued")

        shed: Sequence[tuple[str, str, dict[str, Any]]] = (
            ("POST", "/ask", {"json": {"question": QUESTION}}),
            ("POST", "/ask/stream", {"json": {"question": QUESTION}}),
            ("GET", "/search", {"params": {"q": QUESTION}}),
        )
        for method, path, kwargs in shed:
            r = httpx.request(method, live.url + path, timeout=60, **kwargs)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "7"
            assert r.json() == {
                "detail": "The server is busy: 1 requests are already waiting (setting "
                "queue_limit). Try again in 7 s."
            }
        chat = {"model": "qa-extractive", "messages": [{"role": "user", "content": QUESTION}]}
        r = httpx.post(live.url + "/v1/chat/completions", json=chat, timeout=60)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "7"
        assert r.json()["error"]["code"] == "overloaded"
        assert r.json()["error"]["type"] == "server_error"
        assert gate.shed == 4

        # Bad input is still answered at once with its own status, not queued or shed.
        for body in ({"question": "  "}, {"question": 5}, {}):
            r = httpx.post(live.url + "/ask", json=body, timeout=60)
            assert r.status_code == 422, r.text
        assert gate.shed == 4
        assert recording.started == []  # nothing ran while the worker was held

        release.set()
        answered = queued.result(timeout=120)
    assert answered.status_code == 200, answered.text
    assert "197" in answered.json()["answer"]
    assert recording.started == [QUESTION]


def test_a_wait_over_queue_wait_is_shed_before_the_count_bound(
    demo_settings: Settings, recording: RecordingPipeline
) -> None:
    """The queue takes requests while their estimated wait (jobs ahead x recent work time /
    workers) is within queue_wait: here 40 ms a job, one worker, 0.1 s, so two may wait."""
    settings = demo_settings.model_copy(update={"queue_limit": 100, "queue_wait": 0.1})
    app = one_core_app(settings, recording)
    gate = app_state(app).gate
    gate.observe(0.04)  # as if the recent jobs had taken 40 ms each
    questions = [f"{QUESTION} (asked {i})" for i in range(2)]
    with LiveServer(app) as live, ThreadPoolExecutor(2) as pool:
        with held(gate):
            replies = []
            for i, question in enumerate(questions):  # waits of 0.04 and 0.08 s: queued
                replies.append(post_in_background(pool, live.url, "/ask", {"question": question}))
                wait_for(lambda i=i: gate.pending == 2 + i, what=f"request {i} to be queued")
            r = httpx.post(live.url + "/ask", json={"question": QUESTION}, timeout=60)
            assert r.status_code == 503, r.text  # 0.12 s > 0.1 s, far below 100 waiting
            assert r.headers["retry-after"] == "1"
            assert r.json() == {
                "detail": "The server is busy: 2 requests are already waiting (about 0.1 s of "
                "work; setting queue_wait). Try again in 1 s."
            }
        statuses = [reply.result(timeout=120).status_code for reply in replies]
    assert statuses == [200, 200] and recording.started == questions
    assert gate.shed == 1


def test_one_job_per_worker_may_wait_however_slow_the_jobs_are() -> None:
    """With jobs of 5 s and queue_wait 0.1 s, a slow index is still served, one at a time."""
    gate = Gate(workers=1, queue_limit=10, retry_after=1, queue_wait=0.1)
    gate.observe(5.0)
    with held(gate):
        queued = gate.submit(lambda: "answered")
        with pytest.raises(Overloaded, match=r"about 10\.0 s of work"):
            gate.submit(lambda: "refused")
    assert queued.result(timeout=60) == "answered"
    gate.close()


def test_requests_are_served_in_arrival_order(
    demo_settings: Settings, recording: RecordingPipeline
) -> None:
    app = one_core_app(demo_settings.model_copy(update={"queue_limit": 8}), recording)
    gate = app_state(app).gate
    questions = [f"{QUESTION} (asked {i})" for i in range(5)]
    with LiveServer(app) as live, ThreadPoolExecutor(len(questions)) as pool:
        with held(gate):
            replies = []
            for i, question in enumerate(questions):
                replies.append(post_in_background(pool, live.url, "/ask", {"question": question}))
                wait_for(lambda i=i: gate.pending == 2 + i, what=f"request {i} to be queued")
        statuses = [r.result(timeout=120).status_code for r in replies]
    assert statuses == [200] * len(questions)
    assert recording.started == questions
    assert gate.shed == 0 and gate.pending == 0


def test_a_repeated_question_is_answered_while_every_worker_is_busy(
    demo_settings: Settings, recording: RecordingPipeline
) -> None:
    """Its kept answer needs no worker: it is given at once, while a new question is shed."""
    app = one_core_app(demo_settings.model_copy(update={"queue_limit": 0}), recording)
    gate = app_state(app).gate
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        first = client.post("/ask", json={"question": QUESTION})
        assert first.status_code == 200, first.text
        with held(gate):
            again = client.post("/ask", json={"question": QUESTION})
            assert again.status_code == 200, again.text
            assert again.json()["answer"] == first.json()["answer"]
            spans = again.headers["server-timing"]
            assert "recall;dur=" in spans and "queue" not in spans  # it never met the gate
            new = client.post("/ask", json={"question": f"{QUESTION} Again?"})
            assert new.status_code == 503, new.text
    assert recording.started == [QUESTION] and gate.shed == 1


def test_a_stream_admitted_is_never_cut_by_a_full_queue(
    demo_settings: Settings, recording: RecordingPipeline
) -> None:
    """Its later steps queue behind newer work but are not refused (queue bound 0)."""
    app = one_core_app(demo_settings.model_copy(update={"queue_limit": 0}), recording)
    gate = app_state(app).gate
    with (
        LiveServer(app) as live,
        httpx.Client(base_url=live.url, timeout=120) as client,
        client.stream("POST", "/ask/stream", json={"question": QUESTION}) as stream,
    ):
        assert stream.status_code == 200
        with held(gate):  # the worker is busy and the queue bound is 0
            # Another question: the stream's own may be answered already, and a repeat is
            # recalled without a worker (a fast warm-up made that a race).
            refused = client.post("/ask", json={"question": f"Not a repeat: {QUESTION}"})
            assert refused.status_code == 503
        body = stream.read().decode()
    assert "event: answer" in body and "197" in body


class SilentLLM:
    """A socket that accepts an LLM request and answers nothing until released (then closes)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.asked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            self.asked.set()
            self.release.wait(120)

    def close(self) -> None:
        self.release.set()
        self.thread.join(timeout=30)
        self.sock.close()


def test_an_answerer_waiting_on_its_llm_holds_no_worker(
    demo_settings: Settings, demo_pipeline: Pipeline
) -> None:
    """openai-chat retrieves on the gate, then waits for the LLM off it: with the only worker
    free again and a queue bound of 0, an extractive question is still answered."""
    llm = SilentLLM()
    settings = demo_settings.model_copy(
        update={"queue_limit": 0, "llm_base_url": llm.url, "llm_max_retries": 0}
    )
    pipeline = Pipeline(settings, store=demo_pipeline.store, embedder=demo_pipeline.embedder)
    app = one_core_app(settings, pipeline)
    gate = app_state(app).gate
    try:
        with LiveServer(app) as live, ThreadPoolExecutor(1) as pool:
            body = {"question": QUESTION, "answerer": "openai-chat"}
            waiting = post_in_background(pool, live.url, "/ask", body)
            assert llm.asked.wait(120), "the LLM was never asked"
            wait_for(lambda: gate.pending == 0, what="retrieval to leave the worker")
            r = httpx.post(live.url + "/ask", json={"question": QUESTION}, timeout=120)
            assert r.status_code == 200, r.text
            assert "197" in r.json()["answer"]
            llm.release.set()
            assert waiting.result(timeout=120).status_code == 502
    finally:
        llm.close()
