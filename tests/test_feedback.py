"""Feedback on served answers over real HTTP (uvicorn, the real model and index): answer ids on
every route, the POST/GET/DELETE /feedback contract, the write rule, a restart of `qa serve`, the
exported question set, and calibration on feedback with its held-out effect."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from qa.config import Settings, load_settings
from qa.evaluation.feedback import export, load_feedback
from qa.pipeline import Pipeline
from qa.server.app import create_app
from qa.stores.feedback import feedback_path
from tests.conftest import DEMO_CORPUS, DEMO_DOC_ID, DEMO_QUESTIONS
from tests.server_utils import LiveServer, ServeProcess, new_wording

REGULATIONS = (
    "When did the National Network Information Office issue the Regulations on the "
    "Management of Blockchain Information Services?"
)
UNANSWERABLE = "What did the blockchain policy say about the quokkas living on Rottnest Island?"
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
ID = re.compile(r"[0-9a-f]{32}")


def _copy_index(demo_settings: Settings, folder: Path, **overrides: Any) -> Settings:
    """Settings over a copy of the demo index in `folder` (so its feedback file is this test's)."""
    shutil.copytree(demo_settings.index_dir, folder / "index")
    return load_settings(
        corpus_dir=DEMO_CORPUS, index_dir=folder / "index", _env_file=None, **overrides
    )


@pytest.fixture(scope="module")
def settings(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return _copy_index(demo_settings, tmp_path_factory.mktemp("feedback"))


@pytest.fixture(scope="module")
def pipeline(settings: Settings) -> Pipeline:
    return Pipeline.load(settings)


@pytest.fixture(scope="module")
def live(settings: Settings, pipeline: Pipeline) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, pipeline=pipeline)) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


def _ask(client: httpx.Client, question: str, **body: Any) -> dict[str, Any]:
    r = client.post("/ask", json={"question": question, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _rate(client: httpx.Client, answer_id: str, rating: str, **body: Any) -> str:
    r = client.post("/feedback", json={"answer_id": answer_id, "rating": rating, **body})
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"feedback_id"}
    return str(r.json()["feedback_id"])


def _sse_answer(text: str) -> dict[str, Any]:
    for block in text.split("\n\n"):
        if block.startswith("event: answer\n"):
            return dict(json.loads(block.split("data: ", 1)[1]))
    raise AssertionError(f"no answer event in {text[:500]}")


def test_every_served_answer_gets_its_own_id(client: httpx.Client) -> None:
    question = new_wording(REGULATIONS, 1)
    first, again = _ask(client, question), _ask(client, question)  # the second is a kept answer
    assert ID.fullmatch(first["answer_id"]) and ID.fullmatch(again["answer_id"])
    assert first["answer_id"] != again["answer_id"]
    assert first["answer"] == again["answer"]

    r = client.post("/ask/stream", json={"question": question})
    streamed = _sse_answer(r.text)
    assert ID.fullmatch(streamed["answer_id"]) and streamed["answer_id"] != first["answer_id"]

    body = {"model": "qa-extractive", "messages": [{"role": "user", "content": question}]}
    completion = client.post("/v1/chat/completions", json=body).json()
    v1_id = completion["qa"]["answer_id"]
    stream = client.post("/v1/chat/completions", json={**body, "stream": True}).text
    last = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {")]
    v1_stream_id = next(c["qa"]["answer_id"] for c in last if "qa" in c)
    ids = {first["answer_id"], again["answer_id"], streamed["answer_id"], v1_id, v1_stream_id}
    assert len(ids) == 5
    # Each one resolves to its served answer: each can be rated.
    for answer_id in ids:
        _rate(client, answer_id, "up")


def test_feedback_contract(client: httpx.Client) -> None:
    answer = _ask(client, new_wording(REGULATIONS, 2))
    citation = answer["citations"][0]
    fid = _rate(client, answer["answer_id"], "up")
    # Posting again for the same answer replaces the record (same id, new content).
    evidence = {"doc_id": citation["doc_id"], "start": citation["start"], "end": citation["end"]}
    again = _rate(
        client,
        answer["answer_id"],
        "down",
        kind="wrong_source",
        correction="  January 10, 2019  ",
        evidence=evidence,
    )
    assert again == fid
    listed = client.get("/feedback", params={"kind": "wrong_source"}).json()
    mine = [f for f in listed["feedback"] if f["answer_id"] == answer["answer_id"]]
    assert len(mine) == 1
    record = mine[0]
    assert record["feedback_id"] == fid
    assert (record["rating"], record["kind"], record["correction"]) == (
        "down",
        "wrong_source",
        "January 10, 2019",
    )
    assert record["evidence"] == {**evidence, "text": citation["quote"]}
    assert record["question"] == answer["question"]
    assert record["standalone_question"] == answer["standalone_question"]
    assert record["index_version"].startswith("built ")
    assert record["answer"] == answer  # the Answer JSON as served

    # Errors: an unknown answer is a clear 404; a bad body a 422 naming the field.
    r = client.post("/feedback", json={"answer_id": "f" * 32, "rating": "up"})
    assert r.status_code == 404
    assert r.json()["detail"].startswith(f"No served answer with answer_id '{'f' * 32}'")
    bad = [
        ({"answer_id": answer["answer_id"], "rating": "meh"}, "rating"),
        ({"answer_id": answer["answer_id"]}, "rating"),
        ({"answer_id": answer["answer_id"], "rating": "up", "kind": "wrong_answer"}, "kind"),
        ({"answer_id": answer["answer_id"], "rating": "down", "kind": "bad"}, "kind"),
        ({"answer_id": answer["answer_id"], "rating": "up", "extra": 1}, "extra"),
        ({"answer_id": answer["answer_id"], "rating": "up", "correction": "x" * 4001}, "4000"),
        ({"answer_id": 5, "rating": "up"}, "answer_id"),
        (
            {
                "answer_id": answer["answer_id"],
                "rating": "down",
                "evidence": {"doc_id": DEMO_DOC_ID, "start": 5, "end": 10**9},
            },
            "out of range",
        ),
        (
            {
                "answer_id": answer["answer_id"],
                "rating": "down",
                "evidence": {"doc_id": "nope.txt", "start": 0, "end": 5},
            },
            "not a document of this index",
        ),
    ]
    for body, words in bad:
        r = client.post("/feedback", json=body)
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["detail"], (body, r.text)

    # Paging and filters.
    for n in range(3):
        _rate(client, _ask(client, new_wording(REGULATIONS, 10 + n))["answer_id"], "up")
    everything = client.get("/feedback", params={"limit": 1000}).json()
    page = client.get("/feedback", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == everything["total"] >= 4
    assert [f["feedback_id"] for f in page["feedback"]] == [
        f["feedback_id"] for f in everything["feedback"][1:3]
    ]
    ups = client.get("/feedback", params={"rating": "up"}).json()
    assert ups["feedback"] and all(f["rating"] == "up" for f in ups["feedback"])
    assert client.get("/feedback", params={"kind": "nonsense"}).status_code == 422

    # Delete: 204, then 404.
    assert client.delete(f"/feedback/{fid}").status_code == 204
    r = client.delete(f"/feedback/{fid}")
    assert r.status_code == 404 and "No feedback with feedback_id" in r.json()["detail"]
    left = client.get("/feedback", params={"limit": 1000}).json()
    assert fid not in {f["feedback_id"] for f in left["feedback"]}


def test_writes_follow_the_upload_rule(demo_settings: Settings, tmp_path: Path) -> None:
    # Beyond this machine without a key: reads work, writes are refused.
    open_host = _copy_index(demo_settings, tmp_path / "a", host="0.0.0.0")
    with (
        LiveServer(create_app(open_host, pipeline=Pipeline.load(open_host))) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        answer = _ask(c, REGULATIONS)
        r = c.post("/feedback", json={"answer_id": answer["answer_id"], "rating": "up"})
        assert r.status_code == 403 and "Feedback writes are off" in r.json()["detail"]
        assert c.get("/feedback").status_code == 200
        assert c.delete("/feedback/x").status_code == 403
    # With an API key, the key is needed and enough.
    keyed = _copy_index(demo_settings, tmp_path / "b", host="0.0.0.0", api_key=SecretStr("k"))
    with (
        LiveServer(create_app(keyed, pipeline=Pipeline.load(keyed))) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        auth = {"Authorization": "Bearer k"}
        answer = c.post("/ask", json={"question": REGULATIONS}, headers=auth).json()
        body = {"answer_id": answer["answer_id"], "rating": "up"}
        assert c.post("/feedback", json=body).status_code == 401
        assert c.post("/feedback", json=body, headers=auth).status_code == 201


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(settings: Settings, cwd: Path) -> ServeProcess:
    port = _free_port()
    command = [
        sys.executable, "-m", "qa.cli", "serve", "--index", settings.index_dir,
        "--corpus", settings.corpus_dir, "--port", port, "--watch-interval", "0",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return ServeProcess(command, port=port, cwd=cwd, env=env, timeout=180)


@pytest.mark.slow
def test_restart_keeps_answers_and_feedback_and_export(
    demo_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qa.cli import main

    settings = _copy_index(demo_settings, tmp_path)
    follow_up = "When was it passed?"
    history = [
        {"role": "user", "content": "What does the cryptography law regulate?"},
        {"role": "assistant", "content": "The cryptography law regulates cryptography [1]."},
    ]
    with _serve(settings, tmp_path) as server, httpx.Client(base_url=server.url) as c:
        c.timeout = httpx.Timeout(120)
        good = _ask(c, REGULATIONS)
        wrong = _ask(c, UNANSWERABLE)
        later = _ask(c, follow_up, history=history)
        unrated = _ask(c, new_wording(REGULATIONS, 3))
        vague = _ask(c, new_wording(REGULATIONS, 4))
        _rate(c, good["answer_id"], "up")
        _rate(c, wrong["answer_id"], "down", kind="should_abstain", correction=HOSTILE)
        _rate(c, later["answer_id"], "up")
    assert feedback_path(settings.index_dir).is_file()  # beside the folder, not in it
    with _serve(settings, tmp_path) as server, httpx.Client(base_url=server.url) as c:
        c.timeout = httpx.Timeout(120)
        # The earlier server's answers still resolve, and its feedback is all there.
        _rate(c, unrated["answer_id"], "down", kind="should_answer", correction=HOSTILE)
        _rate(c, vague["answer_id"], "down", kind="wrong_answer")
        listed = c.get("/feedback").json()["feedback"]
    assert [f["answer_id"] for f in listed] == [
        good["answer_id"],
        wrong["answer_id"],
        later["answer_id"],
        unrated["answer_id"],
        vague["answer_id"],
    ]
    assert listed[1]["correction"] == HOSTILE

    # `qa feedback export` and `qa feedback stats`, then `qa eval --feedback --report`.
    out = tmp_path / "feedback.jsonl"
    where = ["--index", str(settings.index_dir), "--corpus", str(DEMO_CORPUS)]
    assert main(["feedback", "export", str(out), *where]) == 0
    assert "4 questions" in capsys.readouterr().out
    assert main(["feedback", "stats", "--json", *where]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total"] == 5 and stats["exportable"] == 4 and stats["unanswerable"] == 1
    assert stats["kinds"] == {"none": 2, "should_abstain": 1, "should_answer": 1, "wrong_answer": 1}
    report = tmp_path / "report.html"
    assert main(["eval", "--feedback", *where, "--report", str(report)]) == 0
    html = report.read_text()
    assert 'id="from-feedback"' in html and "of 4 now right" in html
    # A correction is text in the report: escaped, never markup.
    assert HOSTILE not in html and "&lt;img src=x onerror=" in html

    made = export(load_feedback(settings))
    assert made.skipped == {"rated down (wrong_answer) without a correction or evidence": 1}
    by_answer = {r["feedback"]["answer_id"]: r for r in made.records}
    up = by_answer[good["answer_id"]]
    assert up["question"] == REGULATIONS
    assert up["answerable"] is True and up["answers"] == [good["short_answer"]]
    assert up["evidence"] == [c["quote"] for c in good["citations"] if c["supported"]]
    assert up["gold_ids"] == [DEMO_DOC_ID]
    no = by_answer[wrong["answer_id"]]
    assert (no["answers"], no["answerable"]) == ([], False)
    assert no["feedback"]["correction"] == HOSTILE
    # A follow-up keeps its standalone question (what retrieval used), and what was typed.
    fu = by_answer[later["answer_id"]]
    assert fu["question"] == later["standalone_question"] != follow_up
    assert fu["feedback"]["asked"] == follow_up
    fixed = by_answer[unrated["answer_id"]]
    assert (fixed["answers"], fixed["answerable"], fixed["evidence"]) == ([HOSTILE], True, [])
    assert [json.loads(line) for line in out.read_text().splitlines()] == list(made.records)


def test_calibration_on_feedback_reports_held_out_effect(
    demo_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """People mark answers (here, by the demo set's labels): the earlier half fits, the later
    half is only reported. Marking answered unanswerable questions "should have said it is not
    in the documents" raises the threshold, and on the held-out half more unanswerable
    questions are then refused than before."""
    from qa.cli import main
    from qa.evaluation.calibrate import confidences
    from qa.evaluation.questions import load_questions

    settings = _copy_index(demo_settings, tmp_path)
    pipeline = Pipeline.load(settings)
    now = float(getattr(pipeline.answerer(), "abstain_threshold"))  # noqa: B009
    questions = [q for q in load_questions(DEMO_QUESTIONS).questions if not q.history]
    scored = sorted(
        zip(confidences(pipeline, questions), questions, strict=True), key=lambda t: t[0]
    )
    # Unanswerable ones it answers now, the ones it refuses, and answerable ones it is sure of.
    wrong = [q for c, q in scored if q.should_abstain and c >= now]
    refused = [q for c, q in scored if q.should_abstain and c < now]
    top = max(c for c, q in scored if q.should_abstain)
    sure = [q for c, q in scored if not q.should_abstain and c > top + 0.05]
    assert len(wrong) >= 2 and len(refused) >= 2 and len(sure) >= 8
    k = len(sure) // 2
    # By time: the fit half holds the surest wrong answer, the held-out half the least sure one.
    fit = [wrong[-1], refused[0], *sure[:k]]
    held = [wrong[0], refused[1], *sure[k : 2 * k]]
    with (
        LiveServer(create_app(settings, pipeline=pipeline)) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        for q in fit + held:
            answer = _ask(c, q.question)
            if q.should_abstain and answer["abstained"]:
                _rate(c, answer["answer_id"], "up")  # "not in the documents" was right
            elif q.should_abstain:
                _rate(c, answer["answer_id"], "down", kind="should_abstain")
            elif answer["abstained"]:
                fix = q.answers[0]
                _rate(c, answer["answer_id"], "down", kind="should_answer", correction=fix)
            else:
                _rate(c, answer["answer_id"], "up")
    args = ["--index", str(settings.index_dir), "--corpus", str(DEMO_CORPUS)]
    assert main(["calibrate", "--feedback", *args]) == 0
    out = capsys.readouterr().out
    assert out.index("held-out effect") < out.index("saved abstain_threshold")
    saved = json.loads((settings.index_dir / "calibration.json").read_text())
    effect = saved["held_out"]
    assert (saved["n_questions"], effect["n"], effect["n_unanswerable"]) == (len(fit), len(held), 2)
    before, after = effect["before"], effect["after"]
    assert before["threshold"] == now
    assert after["threshold"] == saved["abstain_threshold"] > now
    # The held-out wrong answer is refused now; nothing answerable is.
    assert (before["recall"], after["recall"]) == (0.5, 1.0)
    assert before["false_abstention"] == after["false_abstention"] == 0.0
