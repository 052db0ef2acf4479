"""`qa mcp` as a subprocess, driven by the official MCP SDK's stdio client."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from qa.config import Settings
from qa.errors import ConfigError, QAError
from tests.conftest import DEMO_CORPUS, DEMO_DOC_ID, ROOT
from tests.needs import dependency
from tests.test_cli import run_qa

if TYPE_CHECKING:
    from mcp import Client

QUESTION = "When was the cryptography law passed?"
TOOLS = {"search", "ask", "get_document"}


def _needs_sdk() -> None:
    dependency(find_spec("mcp") is not None, "the MCP SDK: pip install -e '.[test]'")


def index_args(settings: Settings) -> list[str]:
    return ["--corpus", str(DEMO_CORPUS), "--index", str(settings.index_dir)]


def with_mcp(settings: Settings, body: Callable[[Client], Awaitable[None]]) -> None:
    """Start `qa mcp` on the demo index, connect the SDK's stdio client, run `body`."""
    _needs_sdk()
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "qa.cli", "mcp", *index_args(settings)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=ROOT,
    )

    async def main() -> None:
        async with Client(params, read_timeout_seconds=300) as client:
            await body(client)

    anyio.run(main)


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


def test_tools_answer_as_the_cli_does(demo_settings: Settings) -> None:
    search_json = run_qa("search", QUESTION, "--json", *index_args(demo_settings))
    ask_json = run_qa("ask", QUESTION, "--json", *index_args(demo_settings))
    assert search_json.returncode == 0 and ask_json.returncode == 0, ask_json.stderr
    cli_search, cli_answer = json.loads(search_json.stdout), json.loads(ask_json.stdout)
    results: dict[str, Any] = {}

    async def body(client: Client) -> None:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        results["tools"] = listed
        results["search"] = await client.call_tool("search", {"question": QUESTION})
        results["search_k2"] = await client.call_tool("search", {"question": QUESTION, "k": 2})
        results["ask"] = await client.call_tool("ask", {"question": QUESTION})
        citation = results["ask"].structured_content["citations"][0]
        span = {"doc_id": citation["doc_id"], "start": citation["start"], "end": citation["end"]}
        results["citation"] = citation
        results["document"] = await client.call_tool("get_document", span)
        history = [
            {"role": "user", "content": "What did the National Network Information Office issue?"},
            {"role": "assistant", "content": "The Regulations on blockchain services."},
        ]
        results["follow_up"] = await client.call_tool(
            "ask", {"question": "When?", "history": history}
        )

    with_mcp(demo_settings, body)

    tools = results["tools"]
    assert set(tools) == TOOLS
    schemas = {name: tool.input_schema for name, tool in tools.items()}
    assert schemas["search"]["required"] == ["question"]
    assert schemas["search"]["properties"]["k"]["anyOf"][0] == {
        "type": "integer", "minimum": 1, "maximum": 100,
    }  # fmt: skip
    assert schemas["ask"]["required"] == ["question"]
    assert schemas["ask"]["properties"]["history"]["anyOf"][0]["type"] == "array"
    assert schemas["get_document"]["required"] == ["doc_id"]
    assert all(tool.output_schema for tool in tools.values())
    assert all(tool.annotations.read_only_hint for tool in tools.values())

    for name in ("search", "search_k2", "ask", "document", "follow_up"):
        assert results[name].is_error is False, text_of(results[name])
    assert results["search"].structured_content == cli_search
    assert [p["n"] for p in results["search_k2"].structured_content["passages"]] == [1, 2]

    answer = dict(results["ask"].structured_content)
    answer.pop("timings_ms"), cli_answer.pop("timings_ms")
    # The served answer is recorded (it can be rated); `qa ask` records nothing.
    assert re.fullmatch(r"[0-9a-f]{32}", answer.pop("answer_id"))
    assert cli_answer.pop("answer_id") is None
    assert answer == cli_answer
    assert "January 1, 2020" in answer["answer"] and not answer["abstained"]

    citation, document = results["citation"], results["document"].structured_content
    assert document["id"] == citation["doc_id"] == DEMO_DOC_ID
    assert document["highlight"] == {
        "start": citation["start"], "end": citation["end"], "text": citation["quote"],
    }  # fmt: skip
    assert document["text"] == (DEMO_CORPUS / DEMO_DOC_ID).read_text(encoding="utf-8")
    follow_up = results["follow_up"].structured_content
    assert follow_up["question"] == "When?"
    assert follow_up["standalone_question"] == "When (National Network Information Office issue)?"


BAD = [  # (tool, arguments, what the error message must say)
    ("search", {"question": QUESTION, "k": 0}, "k\n  Input should be greater than or equal to 1"),
    ("search", {"k": 3}, "question\n  Field required"),
    ("ask", {"question": "   "}, "The question is empty. Type a question to ask."),
    ("ask", {"question": "Why?", "history": [{"role": "bot", "content": "x"}]}, "role"),
    ("get_document", {"doc_id": "nope.txt"}, "No document 'nope.txt' in the index"),
    (
        "get_document",
        {"doc_id": DEMO_DOC_ID, "start": 5},
        "Give both start and end to highlight a span, or neither.",
    ),
    ("get_document", {"doc_id": DEMO_DOC_ID, "start": 9, "end": 3}, "is out of range"),
]


def test_bad_arguments_are_tool_errors_saying_what_to_fix(demo_settings: Settings) -> None:
    results: list[Any] = []

    async def body(client: Client) -> None:
        for tool, arguments, _ in BAD:
            results.append(await client.call_tool(tool, arguments))
        results.append(await client.call_tool("search", {"question": "still works?", "k": 1}))

    with_mcp(demo_settings, body)
    for (tool, _, message), result in zip(BAD, results, strict=False):
        assert result.is_error is True, tool
        assert message in text_of(result), text_of(result)
    assert results[-1].is_error is False  # a bad call leaves the server serving


def test_the_pipeline_loads_once_per_process(demo_settings: Settings) -> None:
    from qa.server.mcp_server import PipelineLoader

    calls: list[str] = []

    def load(settings: Settings) -> Any:
        calls.append(threading.current_thread().name)
        return object()

    loader = PipelineLoader(demo_settings, load).start()
    first = loader.get()
    assert all(loader.get() is first for _ in range(3))
    assert calls == ["qa-load"]

    def fail(settings: Settings) -> Any:
        raise QAError("No index at index/. Run `qa index` first.")

    failed = PipelineLoader(demo_settings, fail).start()
    with pytest.raises(QAError, match="Run `qa index` first"):
        failed.get()


def test_missing_sdk_names_the_install_command(
    demo_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qa.server.mcp_server import serve_stdio

    monkeypatch.setitem(sys.modules, "mcp", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'qa\[mcp\]'"):
        serve_stdio(demo_settings)
