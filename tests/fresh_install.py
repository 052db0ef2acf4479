"""Helpers for tests that install `qa` into a new venv as a user would: a copy of the clone, an
environment that cannot see this test run's venv, and the checks a served `qa` must pass.

Everything such a test writes goes under its own temporary folder: the copy, the venv, the index,
the exported model. Only pip's own download cache is shared, as on any machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT

QUESTION = "What must blockchain information service providers do under the 2019 regulations?"
UPLOAD = ("fresh-install-note.txt", b"The fresh install note says the kettle is blue.\n")
# A static file names its siblings in ES module imports: `from "./common.js"`.
_IMPORT = re.compile(r"""\bfrom\s+["']\./([\w.-]+)["']""")
_STATIC = re.compile(r'(?:src|href)="/static/([^"?]+)')


def run(command: list[str] | str, *, cwd: Path, env: dict[str, str], timeout: float = 1200) -> str:
    """Run `command` (a list, or a string for bash), failing with its output if it fails."""
    args = ["bash", "-c", command] if isinstance(command, str) else command
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}{done.stderr[-5000:]}"
    return done.stdout


def copy_clone(dest: Path) -> Path:
    """The files a commit of the work tree would hold, copied to `dest`: a fresh clone."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not in the clone
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def user_env(home: Path) -> dict[str, str]:
    """A shell environment as a new user's: no active venv, nothing of this run's on PATH or in
    QA_*, every cache of qa (and $HOME) inside `home`. pip keeps its usual download cache."""
    ours = {(ROOT / ".venv" / "bin").resolve(), (Path(sys.prefix) / "bin").resolve()}
    path = [
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and Path(p).resolve() not in ours
    ]
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QA_", "PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))
    }
    home.mkdir(parents=True, exist_ok=True)
    # pip's own download cache is shared (the one thing kept across runs, as for any user).
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    cache = os.environ.get("PIP_CACHE_DIR") or os.path.join(user_cache, "pip")
    return {
        **keep,
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PIP_CACHE_DIR": cache,
        "QA_MODEL_CACHE_DIR": str(home / "models"),
        "HF_HUB_OFFLINE": "1",
    }


def timed(what: str, since: float) -> None:
    """Print how long `what` took (pytest shows it with -s, and with a failure)."""
    print(f"{what}: {time.monotonic() - since:.1f} s")


def check_page(url: str, web: Path) -> list[str]:
    """The chat page loads, and so does every static file it references, directly or through
    module imports, byte for byte the files in `web`. Returns the files' names."""
    page = httpx.get(url + "/", timeout=30)
    assert page.status_code == 200 and "<textarea" in page.text, page.text[:500]
    todo, seen = _STATIC.findall(page.text), set[str]()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        got = httpx.get(f"{url}/static/{name}", timeout=30)
        assert got.status_code == 200, (name, got.status_code)
        assert got.content == (web / "static" / name).read_bytes(), name
        if name.endswith(".js"):
            todo += _IMPORT.findall(got.text)
    assert {"app.js", "style.css", "common.js"} <= seen, seen
    return sorted(seen)


def check_cited_answer(url: str) -> dict[str, object]:
    """One question over HTTP gets an answer citing an exact, supported span."""
    response = httpx.post(f"{url}/ask", json={"question": QUESTION}, timeout=300)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert not answer["abstained"] and "fill in the filing information" in answer["answer"]
    assert answer["citations"] and answer["citations"][0]["supported"], answer
    return answer


def check_upload(url: str, corpus: Path, *, timeout: float = 300) -> None:
    """A small .txt upload is accepted (202), saved into the corpus and indexed by its job."""
    name, data = UPLOAD
    response = httpx.post(
        f"{url}/documents", files=[("files", (name, data, "text/plain"))], timeout=60
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/jobs/{job_id}", timeout=30).json())["state"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["state"] == "done", job
    assert (corpus / name).read_bytes() == data
    listed = httpx.get(f"{url}/documents", timeout=30).json()["documents"]
    assert name in {d["doc_id"] for d in listed}
