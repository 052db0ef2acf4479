"""Real headless Chromium (Debian's) for the chat page tests: launch options and page helpers.

The `browser` fixture (tests/conftest.py) launches it once per run; under CI (CI=true) a missing
browser is a failure, locally the browser tests skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

# Debian's chromium (scripts/test.sh installs it), wherever PATH has it.
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = ROOT / "tests" / "artifacts"
# The screenshots the docs show (docs/img/), taken by the tests at the step they check;
# `bash scripts/docs-screenshots.sh` runs those tests and copies them into docs/img/.
DOCS_SHOTS = ARTIFACTS / "docs"


def docs_screenshot(page: Any, name: str) -> None:
    """Save the page as tests/artifacts/docs/<name>, the file docs/img/<name> is copied from."""
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SHOTS / name))


@contextmanager
def chat_page(browser: Any, url: str, **context_options: Any) -> Iterator[Any]:
    """The chat page at `url`, ready (status dot green); no script error may happen on it."""
    options = {"viewport": {"width": 1280, "height": 900}, "reduced_motion": "reduce"}
    context = browser.new_context(**{**options, **context_options})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url + "/")
        page.locator("#status.ready").wait_for()
        yield page
    finally:
        context.close()
    assert errors == []


def ask(page: Any, question: str) -> Any:
    """Type a question, press Enter, and return the finished answer card."""
    done = page.locator(".msg.bot:not(.streaming)")
    before = done.count()
    box = page.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    done.nth(before).wait_for()
    return done.nth(before)
