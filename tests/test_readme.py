"""The README's two commands are the ones that work: the test command is what CI runs, and
the run command's `qa serve` builds the demo index on first start and answers over HTTP."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.server_utils import ServeProcess

RUN = "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . && .venv/bin/qa serve"
TEST = "bash scripts/test.sh"


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    return [
        line
        for block in blocks[:2]
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_readme_starts_with_the_run_and_test_commands() -> None:
    assert _commands() == [RUN, TEST]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.strip().splitlines()[-1] == TEST
    assert "\nexport CI=true\n" in ci  # a missing dependency fails there, whatever runs it


def test_every_link_in_the_readme_resolves() -> None:
    """Relative links name files of the clone (as GitHub resolves them); a `#part` of another
    Markdown file names one of its headings."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) >= 10
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # an absolute URL: nothing in the clone to check
        path, _, part = link.partition("#")
        target = ROOT / path
        if not target.is_file():
            broken.append(link)
        elif part and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            if part not in slugs:
                broken.append(link)
    assert broken == []


def test_the_readme_fits_on_two_screens() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_command_serves_the_demo_corpus_building_the_index_first(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "QA_PORT": str(port),
        "QA_INDEX_DIR": str(tmp_path / "index"),
        "HF_HUB_OFFLINE": "1",
    }
    # The run command's last step, as installed by the test command: `qa serve` from the repo.
    command = [sys.executable, "-m", "qa.cli", "serve"]
    with ServeProcess(command, port=port, cwd=ROOT, env=env, timeout=240) as server:
        base = server.url
        assert (tmp_path / "index" / "manifest.json").exists()
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and "<textarea" in page.text
        question = (
            "What must blockchain information service providers do under the 2019 regulations?"
        )
        answer = httpx.post(f"{base}/ask", json={"question": question}, timeout=60).json()
        assert "fill in the filing information" in answer["answer"]
        assert answer["citations"] and answer["citations"][0]["supported"]
    out = server.output
    assert "No index at" in out or "building it" in out, out[-2000:]
