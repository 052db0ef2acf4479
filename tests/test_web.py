"""The chat page in real headless Chromium (Debian's), against a real server and index.

Under CI (CI=true) a missing browser is a failure; locally it skips (tests/browser.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from qa.config import Settings
from qa.pipeline import Pipeline
from qa.server.app import create_app
from tests.browser import ARTIFACTS, ask, chat_page, docs_screenshot
from tests.fake_answerers import KINDS_ANSWERER, kinds_answerer_registered
from tests.server_utils import LiveServer, build_demo_index

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
HOSTILE = (
    "Zorblax festival notice\n\n"
    f"The Zorblax festival banner reads {SCRIPT} and {IMG} in large letters.\n\n"
    "The Zorblax festival takes place in Quuxville every spring.\n"
)
REGULATIONS = (
    "When did the National Network Information Office issue the Regulations on the "
    "Management of Blockchain Information Services?"
)


@pytest.fixture(scope="module")
def web_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    folder = tmp_path_factory.mktemp("web")
    return build_demo_index(folder, extra={"zorblax-notice.txt": HOSTILE})


@pytest.fixture(scope="module")
def web_pipeline(web_settings: Settings) -> Pipeline:
    return Pipeline.load(web_settings)


@pytest.fixture(scope="module")
def server(web_settings: Settings, web_pipeline: Pipeline) -> Iterator[LiveServer]:
    with LiveServer(create_app(web_settings, pipeline=web_pipeline)) as live:
        yield live


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    with chat_page(browser, server.url) as p:
        yield p


def test_cited_answer_panel_and_document_view(page: Any, server: LiveServer) -> None:
    card = ask(page, REGULATIONS)
    assert "January 10, 2019" in card.locator(".answer-text").inner_text()
    assert card.locator(".short-answer strong").inner_text() == "January 10, 2019"
    assert "Answered by extractive" in card.locator(".meta").inner_text()
    assert re.search(r"\d+ ms on the server", card.locator(".meta").inner_text())
    assert card.locator(".sources .source").count() >= 1
    assert page.get_by_label("Your question").input_value() == ""

    card.locator(".answer-text .cite").first.click()
    panel = page.locator("#panel")
    panel.wait_for()
    assert page.locator("#panel-kicker").text_content() == "Source [1]"
    quote = panel.locator("mark").first.inner_text()
    assert "January 10, 2019" in quote
    assert quote.strip() in card.locator(".answer-text").inner_text()
    docs_screenshot(page, "chat.png")

    href = panel.locator("a.open-doc").get_attribute("href")
    assert re.fullmatch(r"/view/china-blockchain-policy-2017-2019\.txt\?start=\d+&end=\d+", href)
    view = page.context.new_page()
    view.goto(server.url + href)
    assert view.locator("#hl").inner_text() == quote
    assert view.locator("#doc-title").inner_text().startswith("Analysis: China")
    view.close()

    page.keyboard.press("Escape")
    assert panel.is_hidden()


def test_follow_up_sends_history(page: Any) -> None:
    ask(page, REGULATIONS)
    bodies: list[Any] = []
    page.on("request", lambda r: bodies.append(r.post_data_json) if r.method == "POST" else None)
    card = ask(page, "What do they require providers to do?")
    history = bodies[-1]["history"]
    assert [t["role"] for t in history] == ["user", "assistant"]
    assert history[0]["content"] == REGULATIONS
    assert "January 10, 2019" in history[1]["content"]
    assert "Searched for:" in card.locator(".meta").inner_text()
    assert page.locator(".msg.user").count() == 2

    page.get_by_role("button", name="New conversation").click()
    assert page.locator("#conversation .msg").count() == 0
    assert page.locator("#welcome").is_visible()


def test_abstention_looks_different(page: Any) -> None:
    card = ask(page, "What is the capital of Australia?")
    assert "abstained" in card.get_attribute("class")
    assert card.locator(".badge").text_content() == "Not found in the documents"
    assert card.locator(".reason").inner_text() != ""
    assert card.locator(".sources").count() == 0


@pytest.fixture(scope="module")
def kinds_server(web_settings: Settings) -> Iterator[LiveServer]:
    """A server whose default answerer is the test-only one that gives each kind on demand."""
    settings = web_settings.model_copy(update={"answerer": KINDS_ANSWERER})
    with (
        kinds_answerer_registered(),  # before the app warms its default answerer up
        LiveServer(create_app(settings, pipeline=Pipeline.load(settings))) as live,
    ):
        yield live


def _card_border(card: Any) -> str:
    return str(card.locator(".card").evaluate("c => getComputedStyle(c).borderLeftWidth"))


def test_closest_passage_is_marked_and_confidence_shown(
    browser: Any, kinds_server: LiveServer
) -> None:
    with chat_page(browser, kinds_server.url) as page:
        # The default answerer is picked though another name sorts before it.
        page.locator("#answerer option", has_text="(default)").wait_for(state="attached")
        assert page.locator("#answerer").input_value() == ""
        closest = ask(page, "Which passage is closest to the cryptography law?")
        assert "closest" in closest.get_attribute("class")
        assert closest.locator(".badge").text_content() == (
            "Closest passage found — it may not answer your question"
        )
        assert closest.get_attribute("aria-label") == "Closest passage found"
        assert closest.locator(".answer-text").inner_text().startswith("The closest passage I")
        assert closest.locator(".meta .confidence").text_content() == "42% confident"
        assert closest.locator(".sources .source").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chat-closest.png"))

        answered = ask(page, "When will the cryptography law be implemented?")
        assert answered.get_attribute("class") == "msg bot"
        assert answered.locator(".badge").count() == 0
        assert answered.locator(".meta .confidence").text_content() == "87% confident"
        assert _card_border(closest) == "4px" and _card_border(answered) == "1px"

        abstained = ask(page, "What is unknown about the moon?")
        assert "abstained" in abstained.get_attribute("class")
        assert abstained.locator(".badge").text_content() == "Not found in the documents"
        assert abstained.locator(".meta .confidence").count() == 0


def test_hostile_document_shows_as_text(page: Any, server: LiveServer) -> None:
    card = ask(page, "What does the Zorblax festival banner read?")
    card.locator(".answer-text .cite").first.click()
    passage = page.locator("#panel .passage").inner_text()
    assert SCRIPT in passage and IMG in passage
    assert page.locator("#conversation img, #panel img, #panel script").count() == 0
    view = page.context.new_page()
    view.goto(server.url + "/view/zorblax-notice.txt")
    view.locator("#doc[aria-busy=false]").wait_for()
    assert SCRIPT in view.locator("#doc-text").inner_text()
    assert view.evaluate("window.__pwned") is None
    view.close()
    assert page.evaluate("window.__pwned") is None


def test_errors_keep_the_question_and_keyboard(page: Any) -> None:
    box = page.get_by_label("Your question")
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "first line\nsecond line"
    assert page.locator(".msg").count() == 0  # Shift+Enter did not send

    too_long = "why " * 600
    box.fill(too_long)
    box.press("Enter")
    error = page.locator(".msg.bot.error")
    error.wait_for()
    assert error.locator(".badge").text_content() == "Error 422"
    assert "the limit is 2000" in error.inner_text()
    assert box.input_value() == too_long


def test_phone_width_has_no_sideways_scroll(browser: Any, server: LiveServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    p = context.new_page()
    p.goto(server.url + "/")
    p.locator("#status.ready").wait_for()
    card = ask(p, REGULATIONS)
    assert card.is_visible()
    assert p.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_api_key_is_asked_once(
    browser: Any, web_settings: Settings, web_pipeline: Pipeline
) -> None:
    settings = web_settings.model_copy(update={"api_key": SecretStr("browser-key")})
    with LiveServer(create_app(settings, pipeline=web_pipeline)) as live:
        context = browser.new_context()
        p = context.new_page()
        p.goto(live.url + "/")
        dialog = p.locator("#key-dialog")
        dialog.wait_for()  # /answerers answered 401 once the index was ready
        assert "needs an API key" in p.locator("#key-message").inner_text()
        p.get_by_label("API key", exact=True).fill("browser-key")
        p.get_by_role("button", name="Use key").click()
        card = ask(p, REGULATIONS)
        assert "January 10, 2019" in card.inner_text()
        assert p.evaluate("sessionStorage.getItem('qa.apiKey')") == "browser-key"
        assert dialog.is_hidden()
        context.close()
