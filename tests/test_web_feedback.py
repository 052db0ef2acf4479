"""Rating answers in the chat page, in real headless Chromium against a real server and index:
by mouse and by keyboard, a correction, evidence picked in the source panel, the exported set,
and hostile text in a correction shown as text only."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.config import Settings, load_settings
from qa.evaluation.feedback import write_export
from qa.pipeline import Pipeline
from qa.server.app import create_app
from tests.browser import ask, chat_page
from tests.conftest import DEMO_CORPUS, DEMO_DOC_ID
from tests.server_utils import LiveServer, new_wording

REGULATIONS = (
    "When did the National Network Information Office issue the Regulations on the "
    "Management of Blockchain Information Services?"
)
CRYPTOGRAPHY = "From what date will the cryptography law be implemented?"
HOSTILE = '<img src=x onerror="window.__pwned=1"> <b>bold</b>'


@pytest.fixture(scope="module")
def settings(demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("web-feedback")
    shutil.copytree(demo_settings.index_dir, folder / "index")
    return load_settings(corpus_dir=DEMO_CORPUS, index_dir=folder / "index", _env_file=None)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, pipeline=Pipeline.load(settings))) as live:
        yield live


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    with chat_page(browser, server.url) as p:
        yield p


def _records(server: LiveServer) -> list[dict[str, Any]]:
    body = httpx.get(f"{server.url}/feedback", params={"limit": 1000}, timeout=30).json()
    return list(body["feedback"])


def _saved(card: Any) -> None:
    card.locator('.feedback[data-saved="true"]').wait_for()


def test_rate_with_the_mouse_and_change_it(page: Any, server: LiveServer) -> None:
    card = ask(page, new_wording(REGULATIONS, 20))
    group = card.get_by_role("group", name="Rate this answer")
    helpful = group.get_by_role("button", name="Helpful", exact=True)
    not_helpful = group.get_by_role("button", name="Not helpful", exact=True)
    helpful.click()
    _saved(card)
    assert helpful.get_attribute("aria-pressed") == "true"
    assert not_helpful.get_attribute("aria-pressed") == "false"
    assert "Saved as helpful" in group.get_by_role("status").inner_text()
    first = [r for r in _records(server) if r["question"] == new_wording(REGULATIONS, 20)]
    assert [(r["rating"], r["kind"]) for r in first] == [("up", None)]

    # Changed: not helpful, wrong or missing source; the record is replaced, not added.
    not_helpful.click()
    _saved(card)
    card.get_by_role("radio", name="Wrong or missing source").check()
    page.wait_for_function(
        "() => document.querySelector('.msg.bot .fb-status').textContent.includes('not helpful')"
    )
    _saved(card)
    mine = [r for r in _records(server) if r["question"] == new_wording(REGULATIONS, 20)]
    assert [(r["rating"], r["kind"]) for r in mine] == [("down", "wrong_source")]
    assert mine[0]["feedback_id"] == first[0]["feedback_id"]
    assert helpful.get_attribute("aria-pressed") == "false"


def test_keyboard_correction_evidence_and_export(
    page: Any, server: LiveServer, settings: Settings, tmp_path: Path
) -> None:
    question = new_wording(CRYPTOGRAPHY, 21)
    card = ask(page, question)
    # Keyboard only: the rating buttons, the kinds (a radio group), the correction box.
    not_helpful = card.get_by_role("button", name="Not helpful", exact=True)
    not_helpful.focus()
    page.keyboard.press("Enter")
    _saved(card)
    page.keyboard.press("Tab")  # into the radio group: its first choice
    focused = page.evaluate("document.activeElement.value")
    assert focused == "wrong_answer"
    page.keyboard.press("ArrowDown")  # "should have said it is not in the documents"
    page.wait_for_function(
        "() => document.activeElement.value === 'should_abstain' && document.activeElement.checked"
    )
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "TEXTAREA"
    page.keyboard.type(HOSTILE)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Save correction"
    page.keyboard.press("Enter")
    status = card.locator(".fb-status")
    status.filter(has_text="with your correction").wait_for()
    # Hostile text is shown as text: no element made from it, no script run.
    assert HOSTILE in status.inner_text()
    assert card.locator(".feedback img, .feedback b").count() == 0
    assert page.evaluate("window.__pwned") is None

    # Evidence: open the first source, select words in it, "Use as the answer evidence".
    card.locator(".answer-text .cite").first.click()
    quote = page.locator("#panel-body blockquote.passage")
    quote.wait_for()
    words = "January 1, 2020"
    page.evaluate(
        """(words) => {
            const node = document.querySelector('#panel-body blockquote.passage');
            const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT);
            for (let t = walker.nextNode(); t; t = walker.nextNode()) {
                const at = t.textContent.indexOf(words);
                if (at < 0) continue;
                const range = document.createRange();
                range.setStart(t, at);
                range.setEnd(t, at + words.length);
                getSelection().removeAllRanges();
                getSelection().addRange(range);
                return;
            }
            throw new Error('words not in the passage');
        }""",
        words,
    )
    page.get_by_role("button", name="Use as the answer evidence").click()
    page.locator("#panel-foot").get_by_text("Set as this answer's evidence.").wait_for()
    page.wait_for_function(
        "() => document.querySelector('.msg.bot .feedback').dataset.saved === 'true' && "
        "document.querySelector('.msg.bot .fb-evidence').textContent.includes('January 1, 2020')"
    )
    [record] = [r for r in _records(server) if r["question"] == question]
    assert (record["rating"], record["kind"], record["correction"]) == (
        "down",
        "should_abstain",
        HOSTILE,
    )
    evidence = record["evidence"]
    assert evidence["doc_id"] == DEMO_DOC_ID and evidence["text"] == words
    text = httpx.get(f"{server.url}/documents/{DEMO_DOC_ID}", timeout=30).json()["text"]
    assert text[evidence["start"] : evidence["end"]] == words

    # The exported question set: "should have said it is not in the documents" is unanswerable.
    out = tmp_path / "feedback.jsonl"
    write_export(settings, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    [made] = [r for r in lines if r["feedback"]["answer_id"] == record["answer_id"]]
    assert made["question"] == question
    assert (made["answers"], made["answerable"]) == ([], False)
    assert made["feedback"]["kind"] == "should_abstain"
    assert made["feedback"]["correction"] == HOSTILE
