"""Feedback with the Postgres store: two `qa serve` replicas of one database write to one place,
so an answer served by one is rated through the other, and `qa feedback export` sees it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.evaluation.feedback import export, load_feedback
from tests.pg_server import PgServer
from tests.server_utils import demo_corpus_copy
from tests.test_pg_store import (  # noqa: F401  (pg is the fixture)
    _index,
    _settings,
    pg,
    replicas,
)

QUESTION = "From what date will the cryptography law be implemented?"
UNANSWERABLE = "What did the blockchain policy say about the quokkas living on Rottnest Island?"


@pytest.mark.slow
def test_two_replicas_share_feedback(pg: PgServer, tmp_path: Path, embedder: Any) -> None:  # noqa: F811
    settings = _settings(pg, demo_corpus_copy(tmp_path))
    _index(settings, embedder)
    with replicas(settings, tmp_path) as urls:
        a, b = (httpx.Client(base_url=u, timeout=120) for u in urls)
        served = a.post("/ask", json={"question": QUESTION}).json()
        other = b.post("/ask", json={"question": UNANSWERABLE}).json()
        assert served["answer_id"] != other["answer_id"]
        # Rated through the other replica: it finds the answer replica A recorded.
        r = b.post("/feedback", json={"answer_id": served["answer_id"], "rating": "up"})
        assert r.status_code == 201, r.text
        fid = r.json()["feedback_id"]
        body = {"answer_id": other["answer_id"], "rating": "down", "kind": "should_abstain"}
        assert a.post("/feedback", json=body).status_code == 201
        # Changed through A: the same record, replaced.
        again = {**body, "answer_id": served["answer_id"], "kind": "wrong_answer"}
        again["correction"] = "January 1, 2020"
        r = a.post("/feedback", json=again)
        assert r.status_code == 201 and r.json()["feedback_id"] == fid
        for client in (a, b):
            listed = client.get("/feedback").json()
            assert listed["total"] == 2
            rows = {f["answer_id"]: f for f in listed["feedback"]}
            assert rows[served["answer_id"]]["kind"] == "wrong_answer"
            assert rows[served["answer_id"]]["index_version"].startswith("generation ")
            assert rows[other["answer_id"]]["question"] == UNANSWERABLE
        assert b.delete(f"/feedback/{fid}").status_code == 204
        assert a.get("/feedback").json()["total"] == 1
        a.close(), b.close()
    made = export(load_feedback(settings))
    assert [(r["question"], r["answerable"]) for r in made.records] == [(UNANSWERABLE, False)]
