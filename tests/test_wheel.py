"""`qa` installed from its wheel, not from the source tree: the chat page, its static files and the
prompt templates ship inside the package, and `qa serve` runs from a fresh virtual environment,
one that borrows this run's packages and one that has only what the wheel declares."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO_CORPUS, ROOT
from tests.fresh_install import (
    check_cited_answer,
    check_page,
    check_upload,
    run,
    timed,
    user_env,
)
from tests.llm_server import free_port, llm_server  # noqa: F401  (llm_server is a fixture)
from tests.server_utils import ServeProcess


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the repository's tracked layout (no network)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("qa", "web", "prompts"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", dist, src, cwd=src,
    )  # fmt: skip
    (built,) = dist.glob("qa-*.whl")
    return built


def test_the_wheel_carries_every_module_and_the_web_and_prompt_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "qa").rglob("*.py")}
    assert not modules - names, "add the missing packages to [tool.setuptools] packages"
    for folder, packaged in (("web", "qa/_web"), ("prompts", "qa/_prompts")):
        files = [p for p in (ROOT / folder).rglob("*") if p.is_file()]
        assert files
        for path in files:
            assert f"{packaged}/{path.relative_to(ROOT / folder).as_posix()}" in names


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (not editable), reusing this environment's deps."""
    root = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", root, cwd=root)
    python = root / "bin" / "python"
    purelib = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root
    ).strip()
    # The dependencies come from the test environment, after the venv's own site-packages, so
    # the wheel's `qa` wins; the editable install's finder there is not activated (a path
    # listed in a .pth file does not get its own .pth files processed).
    (Path(purelib) / "_qa_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, cwd=root)
    return root


def test_the_installed_package_finds_its_files_inside_itself(venv: Path) -> None:
    code = (
        "import qa, qa.resources as r; "
        "print(qa.__file__); print(r.resource_dir('web')); print(r.resource_dir('prompts'))"
    )
    out = _run(venv / "bin" / "python", "-c", code, cwd=venv).splitlines()
    package = Path(out[0]).parent
    assert venv in package.parents, out
    assert [Path(p) for p in out[1:]] == [package / "_web", package / "_prompts"]


@pytest.fixture
def served(venv: Path, tmp_path: Path, llm_server: str) -> Iterator[str]:  # noqa: F811
    """`qa serve` from the venv, in a folder outside the repository, answering with openai-chat."""
    work = tmp_path / "work"
    shutil.copytree(DEMO_CORPUS, work / "corpus")
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "QA_ANSWERER": "openai-chat",
        "QA_LLM_BASE_URL": llm_server,
        "QA_LLM_MAX_TOKENS": "48",
        "QA_LLM_TIMEOUT": "300",  # a busy 2-core machine: this checks the path, not the speed
    }
    command = [venv / "bin" / "qa", "serve", "--port", port, "--index", tmp_path / "index"]
    with ServeProcess(command, port=port, cwd=work, env=env, timeout=240) as server:
        yield server.url


def test_qa_serve_from_the_wheel_serves_the_page_and_answers_through_the_prompts(
    served: str, tmp_path: Path
) -> None:
    assert (tmp_path / "index" / "manifest.json").exists()  # built outside the repository
    page = httpx.get(served + "/", timeout=10)
    assert page.status_code == 200 and "<textarea" in page.text
    static = re.findall(r'(?:src|href)="(/static/[^"?]+)\?v=', page.text)
    assert {"/static/app.js", "/static/style.css"} <= set(static)
    for path in static:
        got = httpx.get(served + path, timeout=10)
        assert got.status_code == 200
        assert got.content == (ROOT / "web" / path.removeprefix("/")).read_bytes()
    question = "When was the cryptography law passed?"
    body = {"question": question, "top_k": 2, "context_tokens": 400}  # a short prompt
    response = httpx.post(f"{served}/ask", json=body, timeout=330)
    assert response.status_code == 200, response.text
    answer = response.json()
    # openai-chat rendered prompts/system.j2 and user.j2 from the installed package to get here.
    assert answer["answerer"] == "openai-chat" and answer["answer"]
    assert answer["passages"]


def readme_wheel_install() -> str:
    """The docs' line that installs the wheel into a venv (`pip install dist/qa-*.whl ...`), in
    docs/deployment.md's "Installing from a wheel"."""
    page = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    section = page.split("\n## Installing from a wheel\n", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("pip install dist/qa-")]
    return line.split("#", 1)[0].strip()


def test_the_wheel_alone_in_a_clean_venv_serves_the_page_answers_and_takes_uploads(
    wheel: Path, tmp_path: Path
) -> None:
    """`pip install dist/qa-*.whl -c constraints.txt` into a new venv, as docs/deployment.md
    says: the wheel's declared dependencies are all `qa serve` gets (nothing from this
    environment)."""
    install = readme_wheel_install()
    assert "-c constraints.txt" in install, install  # torch stays the pinned CPU build
    (tmp_path / "dist").mkdir()
    shutil.copy2(wheel, tmp_path / "dist")
    shutil.copy2(ROOT / "constraints.txt", tmp_path)
    env = user_env(tmp_path / "home")
    started = time.monotonic()
    run(f"python3 -m venv .venv && .venv/bin/{install}", cwd=tmp_path, env=env)
    timed("wheel: install", started)
    corpus = shutil.copytree(DEMO_CORPUS, tmp_path / "corpus")
    port = free_port()
    command = [tmp_path / ".venv/bin/qa", "serve", "--port", port, "--index", tmp_path / "index"]
    started = time.monotonic()
    with ServeProcess(command, port=port, cwd=tmp_path, env=env, timeout=600) as server:
        timed("wheel: qa serve to /readyz 200 (index built first)", started)
        check_cited_answer(server.url)
        check_page(server.url, ROOT / "web")
        check_upload(server.url, corpus)
