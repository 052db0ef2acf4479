"""The `qa` command line, run as a user would: a real process, real index, real model."""

from __future__ import annotations

import argparse
import json
import os
import re
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


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from qa.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if name != "train-verifier"}


def test_each_command_lists_its_own_settings_by_group_with_examples() -> None:
    calibrate = run_qa("calibrate", "--help")
    assert calibrate.returncode == 0, calibrate.stderr
    text = calibrate.stdout
    for hidden in ("--host", "--port", "--uploads", "--pg-pool-size", "--chunk-tokens"):
        assert hidden not in text
    assert "corpus and index:\n  --corpus DIR" in text
    assert "-k, --top-k N" in text and "(default: 5)" in text
    assert "examples:\n  qa calibrate questions.jsonl" in text
    assert "QA_<NAME>" in text and "docs/configuration.md" in text
    serve = run_qa("serve", "--help").stdout
    assert "server:\n  --host HOST" in serve and "--uploads auto|on|off" in serve
    assert "--chunk-tokens" not in serve
    for name, parser in _subcommands().items():
        help_text = parser.format_help()
        assert "\nexamples:\n  qa " in help_text, name
        assert len(re.findall(r"^  --?\w", help_text, re.MULTILINE)) < 25, name
    trainer = run_qa("train-verifier", "--help").stdout
    assert "examples:\n  qa train-verifier" in trainer


def test_every_setting_has_a_description_and_one_group() -> None:
    from qa.cli import SHOWN
    from qa.config import SETTING_GROUPS, Settings

    grouped = [name for names in SETTING_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(Settings.model_fields), "add the setting to SETTING_GROUPS"
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []
    assert {n for names in SHOWN.values() for n in names} <= set(Settings.model_fields)


def test_a_setting_a_command_does_not_list_is_still_an_option() -> None:
    from qa.cli import _settings, build_parser

    args = build_parser().parse_args(["calibrate", "q.jsonl", "--port", "9001", "--rrf-k", "7"])
    settings = _settings(args)
    assert (settings.port, settings.rrf_k) == (9001, 7)
    args = build_parser().parse_args(["eval", "q.jsonl", "--index", "elsewhere", "-k", "3"])
    assert (args.index_dir, args.top_k) == (Path("elsewhere"), 3)


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
