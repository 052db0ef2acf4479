"""README command 1, run as a new user runs it: on a fresh copy of the clone, a new venv made by
the README's own install line (no extras), then `qa serve` from that venv answering over HTTP.

The command is read from README.md, so the README and this check cannot drift apart. Packages
come from the package index (and pip's cache) exactly as `pip` finds them on the machine.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.fresh_install import (
    check_cited_answer,
    check_page,
    check_upload,
    copy_clone,
    run,
    timed,
    user_env,
)
from tests.llm_server import free_port
from tests.server_utils import ServeProcess

pytestmark = pytest.mark.slow


def readme_run_command() -> tuple[str, list[str]]:
    """README command 1 split into its install steps (a shell line) and its `qa serve` argv."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first, "README.md has no ```bash block"
    (command,) = [ln for ln in first.group(1).splitlines() if ln.strip() and ln[0] != "#"]
    *install, serve = command.split(" && ")
    argv = shlex.split(serve)
    assert argv[1:] == ["serve"], f"README command 1 should end by running `qa serve`: {command}"
    return " && ".join(install), argv


def test_readme_command_one_installs_and_serves_on_a_fresh_clone(tmp_path: Path) -> None:
    install, serve = readme_run_command()
    assert "-c constraints.txt" in install and "[" not in install  # no extras, torch pinned
    clone = copy_clone(tmp_path / "clone")
    env = user_env(tmp_path / "home")
    started = time.monotonic()
    run(install, cwd=clone, env=env)
    timed("README command 1: install", started)
    frozen = run([str(clone / ".venv/bin/pip"), "freeze"], cwd=clone, env=env).splitlines()
    (torch,) = [ln for ln in (clone / "constraints.txt").read_text().splitlines() if "torch=" in ln]
    assert any(ln.split("+")[0] == torch for ln in frozen), frozen  # the pinned CPU build
    assert not [ln for ln in frozen if ln.startswith("pytest")], frozen  # no extras

    port = free_port()
    command = [clone / serve[0], *serve[1:], "--port", port, "--index", tmp_path / "index"]
    started = time.monotonic()
    with ServeProcess(command, port=port, cwd=clone, env=env, timeout=600) as server:
        timed("README command 1: qa serve to /readyz 200 (index built first)", started)
        assert (tmp_path / "index" / "manifest.json").exists()
        check_cited_answer(server.url)
        check_page(server.url, clone / "web")
        check_upload(server.url, clone / "corpus")
