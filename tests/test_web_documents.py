"""The chat page's Documents panel in real Chromium, against a real server that really ingests.

Uploads write into the corpus folder, so this module has its own copy of the demo corpus and
its own index (tests/server_utils.build_demo_index).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from qa.config import Settings
from qa.pipeline import Pipeline
from qa.server.app import create_app
from tests.browser import ARTIFACTS, ask, chat_page, docs_screenshot
from tests.server_utils import LiveServer, build_demo_index

LIGHTHOUSE = (
    "Quimbleton lighthouse log\n\n"
    "The Quimbleton lighthouse has been kept by Arvela Moss since the winter of 1987.\n\n"
    "Its lamp is lit every evening at dusk and shines twenty-two nautical miles out to sea.\n"
)
LIGHTHOUSE_QUESTION = "Who keeps the Quimbleton lighthouse?"
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">.html'
HOSTILE_TITLE = "<img src=x onerror=window.__pwned=1>"
HOSTILE_HTML = (
    # The title's markup is escaped in the file: the document's title is that markup, as text.
    "<html><head><title>&lt;img src=x onerror=window.__pwned=1&gt;</title></head><body>"
    "<script>window.__pwned=1</script>"
    "<p>The Vextrel canal ferry leaves the old quay at seven each morning.</p>"
    '<img src=x onerror="window.__pwned=1">'
    "</body></html>"
)
COUNTS = re.compile(r"(\d+) documents? · (\d+) passages")
# Waits, not timings: a job's end reaches the page only as fast as a busy shared CPU allows.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_demo_index(tmp_path_factory.mktemp("web-documents"))


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[LiveServer]:
    # The app follows the index from here on: each job's new index is swapped in.
    with LiveServer(create_app(settings, pipeline=Pipeline.load(settings))) as live:
        yield live


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    with chat_page(browser, server.url) as p:
        yield p


def counts(page: Any) -> tuple[int, int]:
    """(documents, passages) as the header shows them."""
    match = COUNTS.search(page.locator("#status-text").inner_text())
    assert match, page.locator("#status-text").inner_text()
    return int(match[1]), int(match[2])


def header_counts(page: Any, documents: int) -> None:
    """Wait until the header shows `documents` documents."""
    expect(page.locator("#status-text")).to_have_text(re.compile(rf"^{documents} documents? · "))


def open_documents(page: Any) -> Any:
    """Open the Documents panel and wait for its list; return the panel."""
    panel = page.locator("#docs")
    if panel.is_hidden():
        page.get_by_role("button", name="Documents", exact=True).click()
    expect(panel.locator("#doc-list")).to_have_attribute("aria-busy", "false")
    return panel


def finished_job(panel: Any, title: str) -> Any:
    """The job titled `title`, once the server says it is done or failed."""
    title_is = panel.page.locator(".job-title", has_text=title)
    job = panel.locator(".job.done, .job.failed").filter(has=title_is).first
    job.wait_for()
    return job


def test_upload_ask_cite_then_remove_and_abstain(page: Any, server: LiveServer) -> None:
    documents, passages = counts(page)
    panel = open_documents(page)
    assert panel.locator(".doc-row").count() == documents
    toggle = page.get_by_role("button", name="Documents", exact=True)
    expect(toggle).to_have_attribute("aria-expanded", "true")

    accept = ".txt,.md,.html,.htm,.pdf,.docx,.png,.jpg,.jpeg,.tif,.tiff,.webp"
    assert page.locator("#file-input").get_attribute("accept") == accept
    assert "txt, md, html, pdf, docx, image; up to 50 MB at a time" in panel.inner_text()
    page.locator("#file-input").set_input_files(
        files=[{"name": "lighthouse.txt", "mimeType": "text/plain", "buffer": LIGHTHOUSE.encode()}]
    )
    job = finished_job(panel, "Adding lighthouse.txt")
    assert "done" in job.get_attribute("class")
    bar = job.get_by_role("progressbar", name="Adding lighthouse.txt")
    assert bar.get_attribute("value") == bar.get_attribute("max")
    assert job.locator(".job-file-error").count() == 0
    row = panel.locator(".doc-row", has_text="Quimbleton lighthouse log")
    expect(row).to_have_count(1)
    assert re.search(r"TXT · \d+ passages? · \d+ B · added ", row.inner_text())
    header_counts(page, documents + 1)
    assert counts(page)[1] > passages
    docs_screenshot(page, "documents.png")

    card = ask(page, LIGHTHOUSE_QUESTION)
    assert "Arvela Moss" in card.locator(".answer-text").inner_text()
    card.locator(".answer-text .cite").first.click()
    source = page.locator("#panel")
    source.wait_for()
    assert panel.is_hidden()  # one side panel at a time
    quote = source.locator("mark").first.inner_text()
    assert "Arvela Moss" in quote
    href = source.locator("a.open-doc").get_attribute("href")
    assert re.fullmatch(r"/view/lighthouse\.txt\?start=\d+&end=\d+", href)
    view = page.context.new_page()
    view.goto(server.url + href)
    assert view.locator("#hl").inner_text() == quote
    view.close()

    panel = open_documents(page)
    row.get_by_role("button", name="Remove Quimbleton lighthouse log").click()
    confirm = row.get_by_role("group")
    assert "Remove “Quimbleton lighthouse log”?" in confirm.inner_text()
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Yes, remove").click()
    finished_job(panel, "Removing Quimbleton lighthouse log")
    expect(row).to_have_count(0)
    header_counts(page, documents)
    assert counts(page) == (documents, passages)

    card = ask(page, LIGHTHOUSE_QUESTION)
    assert "abstained" in card.get_attribute("class")
    assert "Arvela Moss" not in card.inner_text()


def test_hostile_file_name_and_html_stay_text(page: Any, server: LiveServer) -> None:
    panel = open_documents(page)
    page.locator("#file-input").set_input_files(
        files=[{"name": HOSTILE_NAME, "mimeType": "text/html", "buffer": HOSTILE_HTML.encode()}]
    )
    job = finished_job(panel, f"Adding {HOSTILE_NAME}")
    assert job.locator(".job-title").inner_text() == f"Adding {HOSTILE_NAME}"
    row = panel.locator(".doc-row", has_text=HOSTILE_TITLE)
    expect(row).to_have_count(1)
    assert row.locator("a.doc-link").inner_text() == HOSTILE_TITLE
    assert page.locator("#docs img, #docs script").count() == 0

    href = row.locator("a.doc-link").get_attribute("href")
    view = page.context.new_page()
    view.goto(server.url + href)
    view.locator("#doc[aria-busy=false]").wait_for()
    assert "Vextrel canal ferry" in view.locator("#doc-text").inner_text()
    assert view.locator("#doc img, #doc script").count() == 0
    assert view.evaluate("window.__pwned") is None
    view.close()
    assert page.evaluate("window.__pwned") is None


def test_refused_file_is_explained_in_plain_words(page: Any) -> None:
    documents, _ = counts(page)
    panel = open_documents(page)
    page.locator("#file-input").set_input_files(
        files=[{"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}]
    )
    job = finished_job(panel, "Adding empty.txt")
    assert "failed" in job.get_attribute("class")
    error = job.locator(".job-file-error").first.inner_text()
    assert "empty.txt is empty (0 bytes)" in error  # the API's own words
    assert job.locator(".job-file").inner_text() == "empty.txt\nnot added"
    expect(page.locator("#docs-live")).to_contain_text(f"Adding empty.txt: {error}")
    assert counts(page)[0] == documents


def test_keyboard_only_upload_and_removal(page: Any) -> None:
    documents, _ = counts(page)
    toggle = page.get_by_role("button", name="Documents", exact=True)
    # Listening for the chooser first: Playwright turns on its interception without waiting,
    # and a key press right after it beat it in 6 of 12 tries here; 0 of 16 this way.
    with page.expect_file_chooser() as chooser:
        toggle.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#docs-title")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#file-input")).to_be_focused()
        page.keyboard.press("Space")
    chooser.value.set_files(
        files=[{"name": "tide-table.md", "mimeType": "text/markdown", "buffer": b"# Tide table\n\n"
                b"High tide at Pellmoor harbour comes at 06:40 on the first of March.\n"}]
    )  # fmt: skip
    panel = page.locator("#docs")
    finished_job(panel, "Adding tide-table.md")
    header_counts(page, documents + 1)
    expect(page.locator("#docs-live")).to_have_text("Adding tide-table.md: done.")

    remove = panel.get_by_role("button", name="Remove Tide table")
    remove.focus()
    page.keyboard.press("Enter")
    expect(panel.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")  # cancels the question, keeps the panel open
    expect(remove).to_be_focused()
    assert panel.is_visible()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(panel.get_by_role("button", name="Yes, remove")).to_be_focused()
    page.keyboard.press("Enter")
    finished_job(panel, "Removing Tide table")
    header_counts(page, documents)
    page.keyboard.press("Escape")
    assert panel.is_hidden()
    expect(page.get_by_role("button", name="Documents", exact=True)).to_be_focused()


def test_files_dropped_on_the_page_are_added(page: Any) -> None:
    documents, _ = counts(page)
    assert page.locator("#docs").is_hidden()
    # Playwright cannot drag a file from the desktop; the drop event Chromium would fire is
    # built here, with a real File in its DataTransfer, and goes to the page's own handler.
    page.evaluate(
        """([name, text]) => {
          const data = new DataTransfer();
          data.items.add(new File([text], name, { type: "text/plain" }));
          const init = { dataTransfer: data, bubbles: true, cancelable: true };
          const drop = new DragEvent("drop", init);
          document.getElementById("conversation").dispatchEvent(drop);
        }""",
        ["ferry.txt", "Vextrel ferry timetable\n\nThe ferry leaves the quay at seven.\n"],
    )
    panel = page.locator("#docs")
    expect(panel).to_be_visible()  # the panel opens to show the job
    job = finished_job(panel, "Adding ferry.txt")
    assert "done" in job.get_attribute("class")
    expect(panel.locator(".doc-row", has_text="Vextrel ferry timetable")).to_have_count(1)
    header_counts(page, documents + 1)


def test_documents_panel_fits_a_phone(browser: Any, server: LiveServer) -> None:
    with chat_page(
        browser, server.url, viewport={"width": 390, "height": 844}, is_mobile=True
    ) as phone:
        panel = open_documents(phone)
        long_name = "a-very-long-file-name-without-any-spaces-" * 3 + ".txt"
        phone.locator("#file-input").set_input_files(
            files=[{"name": long_name, "mimeType": "text/plain", "buffer": b"Ortolan lanes.\n"}]
        )
        finished_job(panel, f"Adding {long_name}")
        # The list is fetched again after the job ends: wait for it, as the desktop test does.
        expect(phone.locator(".doc-row", has_text="Ortolan")).to_have_count(1)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(exist_ok=True)
        phone.screenshot(path=str(ARTIFACTS / "documents-phone.png"))


def test_without_uploads_the_panel_says_why(browser: Any, settings: Settings) -> None:
    off = settings.model_copy(update={"uploads": "off"})
    with (
        LiveServer(create_app(off, pipeline=Pipeline.load(off))) as live,
        chat_page(browser, live.url) as page,
    ):
        panel = open_documents(page)
        notice = panel.locator("#uploads-off").inner_text()
        assert notice.startswith("Uploads and deletes are off on this server (setting uploads=off)")
        assert page.locator("#file-input").count() == 0
        assert panel.locator(".doc-row").count() >= 1
        assert panel.get_by_role("button", name=re.compile("^Remove")).count() == 0
