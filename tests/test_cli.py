"""The `qa` command line, run as a user would: a real process, real index, real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_CORPUS, ROOT


def run_qa(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "qa.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_help_is_fast_and_imports_no_torch() -> None:
    code = (
        "import sys; from qa.cli import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'transformers') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_text = run_qa("--help").stdout
    for command in ("index", "search", "ask", "chat", "answerers", "serve", "mcp", "eval"):
        assert command in help_text


def test_index_search_json_round_trip(tmp_path: Path) -> None:
    index = tmp_path / "index"
    built = run_qa("index", "--corpus", str(DEMO_CORPUS), "--index", str(index))
    assert built.returncode == 0, built.stderr
    assert "1 added" in built.stdout
    assert "INFO qa.ingest" in built.stderr  # `qa index` logs at INFO ...
    assert "faiss.loader" not in built.stderr  # ... but not faiss's "could not load AVX2" noise
    again = run_qa("index", "--corpus", str(DEMO_CORPUS), "--index", str(index))
    assert "1 unchanged" in again.stdout and "0 chunks embedded" in again.stdout

    question = "What must blockchain information service providers do under the 2019 regulations?"
    out = run_qa("search", question, "--index", str(index), "-k", "3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["question"] == question
    assert [p["n"] for p in data["passages"]] == [1, 2, 3]
    first = data["passages"][0]
    assert set(first) == {
        "n",
        "chunk_id",
        "doc_id",
        "title",
        "text",
        "score",
        "start",
        "end",
        "page",
    }
    assert "fill in the filing information" in first["text"]
    source = (DEMO_CORPUS / first["doc_id"]).read_text(encoding="utf-8")
    assert source[first["start"] : first["end"]] == first["text"]

    human = run_qa("search", question, "--index", str(index), "-k", "1")
    assert human.returncode == 0 and "fill in the filing information" in human.stdout


def test_missing_index_is_a_clear_error_without_traceback(tmp_path: Path) -> None:
    out = run_qa("search", "anything", "--index", str(tmp_path / "nothing"))
    assert out.returncode == 1
    assert "No index at" in out.stderr and "qa index" in out.stderr
    assert "Traceback" not in out.stderr


def test_empty_corpus_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = run_qa("index", "--corpus", str(tmp_path / "empty"), "--index", str(tmp_path / "i"))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "empty" in out.stderr.lower()


def test_bad_setting_names_the_field(tmp_path: Path) -> None:
    out = run_qa("index", "--chunk-tokens", "50", "--chunk-overlap", "60", "--index", str(tmp_path))
    assert out.returncode == 1
    assert "chunk_overlap (60) must be smaller than chunk_tokens (50)" in out.stderr


def test_a_env_file_is_read_only_where_qa_env_file_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The suite sets QA_ENV_FILE empty (tests/conftest.py): a developer's .env in the working
    folder reaches neither a `qa` process nor `main([...])`; named, the file is read."""
    from qa.cli import main

    (tmp_path / ".env").write_text("QA_BOGUS=1\n", encoding="utf-8")
    args = ["search", "anything", "--index", str(tmp_path / "nothing")]
    refused = "Invalid settings: qa_bogus: Extra inputs are not permitted"
    out = run_qa(*args, cwd=tmp_path)
    assert out.returncode == 1 and "No index at" in out.stderr, out.stderr
    monkeypatch.chdir(tmp_path)
    assert main(args) == 1
    assert "No index at" in capsys.readouterr().err
    named = run_qa(*args, cwd=tmp_path, env={"QA_ENV_FILE": str(tmp_path / ".env")})
    assert named.returncode == 1 and refused in named.stderr, named.stderr
    monkeypatch.setenv("QA_ENV_FILE", ".env")
    assert main(args) == 1
    assert refused in capsys.readouterr().err


def test_ask_labels_a_closest_passage_and_shows_the_confidence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qa.cli import _print_answer
    from qa.types import Answer

    text = "The closest passage I found, which may not answer this: Rollo led them."
    _print_answer(Answer("q?", text, "extractive", kind="closest", confidence=0.42))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Closest passage found — it may not answer your question",
        text,
        "extractive · 42% confident · 0 ms",
    ]
    _print_answer(Answer("q?", "Rollo led them.", "extractive", confidence=0.875))
    assert capsys.readouterr().out.splitlines() == [
        "Rollo led them.",
        "extractive · 88% confident · 0 ms",
    ]
    _print_answer(Answer("q?", "Not found.", "extractive", abstained=True, confidence=0.1))
    assert capsys.readouterr().out.splitlines() == ["Not found.", "extractive · 0 ms"]
