"""Shared fixtures: the real embedding model, a real index of the demo corpus and a real browser,
each made once per run."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_CORPUS = ROOT / "corpus"
DEMO_DOC_ID = "china-blockchain-policy-2017-2019.txt"
DEMO_QUESTIONS = ROOT / "bench" / "demo_questions.jsonl"
DATA = ROOT / "tests" / "data"  # every record a test reads; see tests/data/README.md

# Tests see only the settings they pass; a developer's QA_* variables and .env file must not
# leak in (QA_ENV_FILE empty: Settings reads no .env, here and in every `qa` subprocess).
for _name in [n for n in os.environ if n.startswith("QA_")]:
    del os.environ[_name]
os.environ["QA_ENV_FILE"] = ""
os.environ["HF_HUB_OFFLINE"] = "1"
# What the run writes outside tmp_path goes to one temp folder, never the repository or the
# developer's ~/.cache (scripts/test.sh checks): exported encoder files, made once and shared
# by every test's index (and `qa serve` subprocess) as on a user's machine; Hypothesis's
# example database and Unicode tables (else .hypothesis/ in the working directory).
_RUN = tempfile.mkdtemp(prefix="qa-test-run-")
atexit.register(shutil.rmtree, _RUN, ignore_errors=True)
os.environ["QA_MODEL_CACHE_DIR"] = os.path.join(_RUN, "models")
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(_RUN, "hypothesis")
# onnxruntime (1.29+) keeps a device id in ~/.cache/Microsoft and uploads usage telemetry
# unless told not to: no test writes there or reaches the network.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 embedder, loaded once for the whole run."""
    from qa.embedding.models import get_embedder

    return get_embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory: pytest.TempPathFactory, embedder) -> Settings:  # type: ignore[no-untyped-def]
    """Settings pointing at a fresh index of the demo corpus, built once per run."""
    from qa.ingest.build import build_index

    index_dir = tmp_path_factory.mktemp("demo") / "index"
    settings = load_settings(corpus_dir=DEMO_CORPUS, index_dir=index_dir, _env_file=None)
    build_index(settings, embedder=embedder)
    return settings


@pytest.fixture(scope="session")
def demo_pipeline(demo_settings: Settings):  # type: ignore[no-untyped-def]
    """A loaded Pipeline over the demo index."""
    from qa.pipeline import Pipeline

    return Pipeline.load(demo_settings)


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run a test from an empty folder (so default corpus/ and index/ are its own)."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Real headless Chromium (tests/browser.py), launched once for the whole run."""
    from tests.browser import ARGS, CHROMIUM
    from tests.needs import dependency

    dependency(CHROMIUM.is_file(), f"{CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Chromium keeps crash-report settings in ~/.config/chromium and GLib's dconf a file in
    # ~/.cache/dconf (without XDG_RUNTIME_DIR): this run's temp folder instead.
    dirs = {"XDG_CONFIG_HOME": "config", "XDG_CACHE_HOME": "cache", "XDG_RUNTIME_DIR": "runtime"}
    env = dict(os.environ)
    for variable, name in dirs.items():
        env[variable] = os.path.join(_RUN, "chromium", name)
        os.makedirs(env[variable], mode=0o700, exist_ok=True)
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, env=env)
        yield launched
        launched.close()
