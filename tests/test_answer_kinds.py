"""`kind` and `confidence` of an Answer on every wire: the models, /ask, /ask/stream, /v1, MCP.

The answers come from a test-only answerer (tests/fake_answerers.py) over the real demo index
and a real uvicorn socket, so each kind appears on demand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

import anyio
import httpx
import pytest

from qa.config import Settings
from qa.pipeline import Pipeline
from qa.server.app import create_app
from qa.server.models import _ANSWER_EXAMPLE, AnswerOut, AnswerResult
from qa.types import Answer, Turn
from tests.fake_answerers import (
    ANSWERED_CONFIDENCE,
    CLOSEST_CONFIDENCE,
    CLOSEST_TEXT,
    KINDS_ANSWERER,
    KindsAnswerer,
    kinds_answerer_registered,
)
from tests.needs import dependency
from tests.server_utils import LiveServer

CLOSEST = "Which passage is closest to the cryptography law?"
ANSWERED = "When will the cryptography law be implemented?"
UNKNOWN = "What is unknown about the moon?"


@pytest.fixture(scope="module")
def kinds_pipeline(demo_settings: Settings) -> Iterator[Pipeline]:
    """The demo index with the fake as its default answerer (no other answerer is loaded)."""
    with kinds_answerer_registered():
        yield Pipeline.load(demo_settings.model_copy(update={"answerer": KINDS_ANSWERER}))


@pytest.fixture(scope="module")
def live(kinds_pipeline: Pipeline) -> Iterator[LiveServer]:
    with LiveServer(create_app(kinds_pipeline.settings, pipeline=kinds_pipeline)) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


def _stream_answer(response: httpx.Response) -> dict[str, Any]:
    """The data of the final `answer` event of a text/event-stream body."""
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().split("\n") if line)
        if lines.get("event") == "answer":
            return dict(json.loads(lines["data"]))
    raise AssertionError(f"no answer event in {response.text[:300]!r}")


# -- the models -----------------------------------------------------------------------------


def test_abstained_is_always_the_kind_of_an_abstention() -> None:
    assert (
        Answer(question="q", answer="No.", answerer="x", abstained=True, kind="closest").kind
        == "abstained"
    )
    with pytest.raises(ValueError, match="kind 'abstained' needs abstained=True"):
        Answer(question="q", answer="x", answerer="x", kind="abstained")


def test_wire_model_mirrors_answer_to_dict_for_every_kind(kinds_pipeline: Pipeline) -> None:
    passages = kinds_pipeline.search(ANSWERED)
    fake = KindsAnswerer()
    for question, kind in ((ANSWERED, "answered"), (CLOSEST, "closest"), (UNKNOWN, "abstained")):
        answer = fake.answer(question, passages)
        assert answer.kind == kind
        wire = answer.to_dict()
        assert AnswerOut.model_validate(wire).model_dump(exclude_unset=True) == wire
        assert AnswerResult.model_validate(wire).model_dump() == wire
    schema = AnswerOut.model_json_schema()
    assert schema["properties"]["kind"]["enum"] == ["answered", "closest", "abstained"]
    assert {"kind", "confidence"} <= set(schema["required"])
    confidence = schema["properties"]["confidence"]["anyOf"][0]
    assert confidence == {"type": "number", "minimum": 0, "maximum": 1}
    example = AnswerOut.model_validate(_ANSWER_EXAMPLE)
    assert (example.kind, example.confidence) == ("answered", 0.87)


# -- over HTTP ------------------------------------------------------------------------------


def test_ask_carries_kind_and_confidence(client: httpx.Client) -> None:
    closest = client.post("/ask", json={"question": CLOSEST, "answerer": KINDS_ANSWERER}).json()
    assert (closest["kind"], closest["confidence"], closest["abstained"]) == (
        "closest", CLOSEST_CONFIDENCE, False,
    )  # fmt: skip
    assert closest["answer"].startswith(CLOSEST_TEXT) and len(closest["citations"]) == 1
    answered = client.post("/ask", json={"question": ANSWERED, "answerer": KINDS_ANSWERER}).json()
    assert (answered["kind"], answered["confidence"]) == ("answered", ANSWERED_CONFIDENCE)
    unknown = client.post("/ask", json={"question": UNKNOWN, "answerer": KINDS_ANSWERER}).json()
    assert (unknown["kind"], unknown["confidence"], unknown["abstained"]) == (
        "abstained", None, True,
    )  # fmt: skip


def test_stream_answer_event_carries_kind_and_confidence(client: httpx.Client) -> None:
    r = client.post("/ask/stream", json={"question": CLOSEST, "answerer": KINDS_ANSWERER})
    assert r.status_code == 200
    final = _stream_answer(r)
    assert (final["kind"], final["confidence"]) == ("closest", CLOSEST_CONFIDENCE)
    plain = client.post("/ask", json={"question": CLOSEST, "answerer": KINDS_ANSWERER}).json()
    final.pop("timings_ms"), plain.pop("timings_ms")
    # Each served answer gets its own id, the same answer served twice too.
    assert final.pop("answer_id") != plain.pop("answer_id")
    assert final == plain


def test_openai_qa_field_carries_kind_and_confidence(client: httpx.Client) -> None:
    body = {"model": f"qa-{KINDS_ANSWERER}", "messages": [{"role": "user", "content": CLOSEST}]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    completion = r.json()
    assert completion["choices"][0]["message"]["content"].startswith(CLOSEST_TEXT)
    assert (completion["qa"]["kind"], completion["qa"]["confidence"]) == (
        "closest", CLOSEST_CONFIDENCE,
    )  # fmt: skip
    streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
    chunks = [
        line.removeprefix("data: ")
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    last = [json.loads(c) for c in chunks if '"qa"' in c][-1]
    assert (last["qa"]["kind"], last["qa"]["confidence"]) == ("closest", CLOSEST_CONFIDENCE)


def test_openapi_documents_kind_and_confidence(client: httpx.Client) -> None:
    answer = client.get("/openapi.json").json()["components"]["schemas"]["AnswerOut"]
    assert answer["properties"]["kind"]["enum"] == ["answered", "closest", "abstained"]
    assert answer["examples"][0]["kind"] == "answered"
    assert answer["examples"][0]["confidence"] == 0.87


# -- MCP ------------------------------------------------------------------------------------


class _ClosestPipeline:
    """Just enough Pipeline for the `ask` tool: every question gets the fake's closest answer."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.passages = pipeline.search(CLOSEST)

    def ask(self, question: str, *, history: tuple[Turn, ...] = ()) -> Answer:
        return KindsAnswerer().answer(f"closest: {question}", self.passages)


def test_mcp_ask_result_and_output_schema_carry_kind(kinds_pipeline: Pipeline) -> None:
    dependency(find_spec("mcp") is not None, "the MCP SDK: pip install -e '.[test]'")
    from qa.server.mcp_server import build_server

    stub: Any = _ClosestPipeline(kinds_pipeline)
    server = build_server(lambda: stub)
    found: dict[str, Any] = {}

    async def main() -> None:
        found["tools"] = {t.name: t for t in await server.list_tools()}
        found["ask"] = await server.call_tool("ask", {"question": "Anything?"})

    anyio.run(main)
    schema = found["tools"]["ask"].output_schema
    assert schema["properties"]["kind"]["enum"] == ["answered", "closest", "abstained"]
    assert {"kind", "confidence"} <= set(schema["required"])
    assert "closest" in found["tools"]["ask"].description
    result = found["ask"].structured_content
    assert (result["kind"], result["confidence"], result["abstained"]) == (
        "closest", CLOSEST_CONFIDENCE, False,
    )  # fmt: skip
