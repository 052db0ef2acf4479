"""Scans read by OCR: images and scanned PDF pages, with the real model on pictures made here.

Every picture is typeset at test time (DejaVu Serif, and WenQuanYi Zen Hei for Chinese); none
is stored in the repository. The real PP-OCRv4 model of the `ocr` extra reads them.
"""

from __future__ import annotations

import importlib.util
import io
import re
import struct
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.config import Settings
from qa.errors import OcrUnavailableError, UploadError
from qa.ingest.layout import Box, page_text
from qa.ingest.ocr import OcrOptions, image_pages, require
from qa.ingest.readers import load_corpus
from qa.ingest.uploads import check_upload
from qa.pipeline import Pipeline
from qa.server.app import create_app
from tests import needs
from tests.pdf_writer import pdf_bytes
from tests.server_utils import LiveServer, build_demo_index, wait_for

SERIF = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
CJK = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
LEDGER = (
    "The Marrowby ferry ledger records that Captain Odile Farrant sailed the night crossing "
    "on the fourth of May with nineteen passengers and a cargo of slate."
)
LEDGER_QUESTION = "Who sailed the night crossing on the Marrowby ferry?"
SCANNED = "The pumping station at Wexcombe was rebuilt in brick after the flood of 1911."
CHINESE = "区块链技术发展迅速"
ALL_IMAGES = ".txt,.md,.html,.htm,.pdf,.docx,.png,.jpg,.jpeg,.tif,.tiff,.webp"


@pytest.fixture(autouse=True)
def ocr_installed() -> None:
    present = all(importlib.util.find_spec(m) for m in ("rapidocr_onnxruntime", "pypdfium2"))
    needs.dependency(present, "the OCR extra (pip install -e '.[ocr]')")
    needs.dependency(SERIF.is_file(), f"the font {SERIF} (apt-get install fonts-dejavu-core)")


def typeset(lines: list[str], *, font: Path = SERIF, size: int = 32, width: int = 1700) -> Any:
    """A white page with `lines` in black, one under the other (about 200 dpi at size 32)."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font), size)
    page = Image.new("L", (width, 120 + len(lines) * size * 2), 255)
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((100, 60 + i * size * 2), line, font=face, fill=0)
    return page


def wrapped(text: str, chars: int = 70) -> list[str]:
    import textwrap

    return textwrap.wrap(text, chars)


def png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def scanned_pdf(image: Any) -> bytes:
    """A one-page PDF holding only a picture of the page (no text layer), as a scanner's."""
    out = io.BytesIO()
    image.convert("RGB").save(out, "PDF", resolution=200)
    return out.getvalue()


def mixed_pdf(text_lines: list[str], scan: bytes) -> bytes:
    """Page 1 with a text layer, page 2 a scan."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in (pdf_bytes([text_lines]), scan):
        for page in PdfReader(io.BytesIO(data)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels and holds none: only a decoder would notice."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))


def tiff_pages(n: int) -> bytes:
    from PIL import Image

    frames = [Image.new("L", (1, 1), 255) for _ in range(n)]
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


# -- layout (no model) --------------------------------------------------------------------


def test_two_columns_are_read_one_after_the_other_under_a_spanning_title() -> None:
    title = [Box(100, 10, 900, 40, "A Title Across Both Columns")]
    left = [Box(100, 60 + 30 * i, 480, 85 + 30 * i, f"left {i}") for i in range(4)]
    right = [Box(520, 60 + 30 * i, 900, 85 + 30 * i, f"right {i}") for i in range(4)]
    text = page_text([*right, *title, *left])  # any order in, reading order out
    assert text == (
        "A Title Across Both Columns\n\nleft 0\nleft 1\nleft 2\nleft 3\n"
        "right 0\nright 1\nright 2\nright 3"
    )


def test_pieces_of_a_line_join_and_lose_what_they_share() -> None:
    boxes = [Box(18, 42, 300, 81, "The quick brown"), Box(298, 43, 565, 81, "fox jumps over t")]
    boxes.append(Box(547, 42, 759, 81, "the lazy dog."))
    assert page_text(boxes) == "The quick brown fox jumps over the lazy dog."
    assert page_text([Box(0, 0, 100, 30, "区块链"), Box(102, 0, 200, 30, "技术")]) == "区块链技术"


def test_a_gap_or_an_indent_starts_a_paragraph() -> None:
    lines = [Box(100, 0, 900, 30, "one"), Box(100, 35, 900, 65, "two")]
    lines += [Box(100, 120, 900, 150, "three"), Box(180, 155, 900, 185, "four")]
    assert page_text(lines) == "one\ntwo\n\nthree\n\nfour"


# -- reading files ------------------------------------------------------------------------


def test_an_image_and_a_scanned_pdf_page_are_read_with_their_page_numbers(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ledger.png").write_bytes(png(typeset(wrapped(LEDGER))))
    text_page = ["Wexcombe parish notes, typed page.", "The chapel roof was mended in 1908."]
    (corpus / "parish.pdf").write_bytes(mixed_pdf(text_page, scanned_pdf(typeset([SCANNED]))))
    seen: list[tuple[int, int]] = []
    load = load_corpus(
        corpus, ocr_cache=tmp_path / "ocr", on_pages=lambda d, t: seen.append((d, t))
    )
    assert load.skipped == ()
    assert seen == [(0, 2), (1, 2), (2, 2)]  # one page each: the PDF's typed page needs none
    ledger, parish = load.documents
    assert ledger.id == "ledger.png" and ledger.pages == (0,)
    # Every letter right; the model may miss a space between two words now and then.
    assert re.sub(r"\s", "", ledger.text) == re.sub(r"\s", "", LEDGER)
    assert "Captain Odile Farrant sailed" in ledger.text
    assert parish.text.startswith("Wexcombe parish notes, typed page.")
    at = parish.text.index("The pumping station at Wexcombe")
    assert parish.text[at:].strip() == SCANNED
    assert parish.page_at(at) == 2 and parish.page_at(0) == 1
    # Read again from the cache: nothing recognised twice, the same text.
    again = load_corpus(corpus, ocr_cache=tmp_path / "ocr")
    assert again.documents == load.documents
    assert len(list((tmp_path / "ocr").glob("*.json"))) == 2


def test_chinese_text_in_an_image_is_recognised() -> None:
    from qa.ingest.ocr import recognise

    needs.dependency(CJK.is_file(), f"a CJK font at {CJK} (apt-get install fonts-wqy-zenhei)")
    image = typeset([CHINESE, "政策支持区块链产业"], font=CJK, size=40, width=900)
    assert recognise(image.convert("RGB")).split() == [CHINESE, "政策支持区块链产业"]


# -- limits and the missing extra ---------------------------------------------------------


def test_an_image_bomb_is_refused_from_its_header() -> None:
    options = OcrOptions()
    # Any decoding of these bytes would fail otherwise: they hold a header and no pixels.
    with pytest.raises(UploadError, match=r"bomb.png is 100000 x 100000 pixels, over the limit"):
        image_pages("bomb.png", png_header(100_000, 100_000), options)
    with pytest.raises(UploadError, match=r"20000 x 10000 pixels, over the limit of 60000000"):
        image_pages("wide.png", png_header(20_000, 10_000), options)
    assert image_pages("fine.png", png_header(2_000, 3_000), options) == 1


def test_a_tiff_of_ten_thousand_pages_is_refused() -> None:
    data = tiff_pages(10_000)
    with pytest.raises(UploadError, match=r"more than 1000 pages \(setting ocr_max_pages\)"):
        check_upload("book.tiff", data, allowed=["image"], max_bytes=10**9)
    assert image_pages("book.tiff", tiff_pages(3), OcrOptions(max_pages=3)) == 3


def test_without_the_extra_a_scan_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails
    with pytest.raises(OcrUnavailableError, match=re.escape("pip install -e '.[ocr]'")):
        require("scan.png")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "scan.png").write_bytes(png(typeset(["A page of text."])))
    (corpus / "notes.txt").write_text("Plain notes.\n", encoding="utf-8")
    load = load_corpus(corpus)
    assert [d.id for d in load.documents] == ["notes.txt"]
    (skipped,) = load.skipped
    assert skipped.path == "scan.png"
    assert "needs OCR, which is an optional extra" in skipped.reason
    assert "pip install -e '.[ocr]'" in skipped.reason


# -- over HTTP ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return build_demo_index(tmp_path_factory.mktemp("ocr"))


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, pipeline=Pipeline.load(settings))) as live:
        yield live


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/documents", files={"files": (name, data)}, timeout=60)


def finished(url: str, job_id: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        seen.append(httpx.get(f"{url}/jobs/{job_id}", timeout=10).json())
        return seen[-1]["state"] in ("done", "failed")

    wait_for(done, what=f"job {job_id}", timeout=300)
    units = {s["progress"]["unit"] for s in seen}
    return {**seen[-1], "units": units}


def test_bombs_and_the_missing_extra_get_422_with_the_reason(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = upload(server.url, "bomb.png", png_header(100_000, 100_000))
    assert bomb.status_code == 422
    assert "over the limit of 60000000 pixels" in bomb.json()["detail"]
    book = upload(server.url, "book.tif", tiff_pages(1001))
    assert book.status_code == 422
    assert "more than 1000 pages (setting ocr_max_pages)" in book.json()["detail"]
    fake = upload(server.url, "photo.jpg", b"GIF89a not a jpeg")
    assert fake.status_code == 415
    assert "is not a .jpg image" in fake.json()["detail"]
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    missing = upload(server.url, "scan.png", png(typeset(["A page of text."])))
    assert missing.status_code == 422
    assert "scan.png needs OCR" in missing.json()["detail"]
    assert "pip install -e '.[ocr]'" in missing.json()["detail"]


def test_a_scanned_pdf_answers_with_its_page(server: LiveServer) -> None:
    typed = ["Marrowby harbour accounts.", "Nothing of note was landed in April."]
    data = mixed_pdf(typed, scanned_pdf(typeset(wrapped(LEDGER))))
    response = upload(server.url, "harbour.pdf", data)
    assert response.status_code == 202
    job = finished(server.url, response.json()["job_id"])
    assert job["state"] == "done", job
    assert "pages" in job["units"]  # the OCR part of the job counts pages
    answer = httpx.post(f"{server.url}/ask", json={"question": LEDGER_QUESTION}, timeout=60)
    cited = [c for c in answer.json()["citations"] if c["doc_id"] == "harbour.pdf"]
    assert cited, answer.json()
    assert cited[0]["page"] == 2
    assert "Odile Farrant" in cited[0]["quote"]


def test_an_uploaded_image_answers_and_its_citation_highlights(
    browser: Any, server: LiveServer
) -> None:
    from playwright.sync_api import expect

    from tests.browser import ask, chat_page

    with chat_page(browser, server.url) as page:
        page.get_by_role("button", name="Documents", exact=True).click()
        assert page.locator("#file-input").get_attribute("accept") == ALL_IMAGES
        page.locator("#file-input").set_input_files(
            files=[
                {
                    "name": "ledger.png",
                    "mimeType": "image/png",
                    "buffer": png(typeset(wrapped(LEDGER))),
                }
            ]
        )
        title = page.locator(".job-title", has_text="Adding ledger.png")
        job = page.locator(".job.done, .job.failed").filter(has=title).first
        job.wait_for(timeout=300_000)
        assert "done" in (job.get_attribute("class") or "")
        card = ask(page, LEDGER_QUESTION)
        assert "Odile Farrant" in card.locator(".answer-text").inner_text()
        card.locator(".answer-text .cite").first.click()
        source = page.locator("#panel")
        source.wait_for()
        expect(source.locator("mark").first).to_contain_text("Odile Farrant")
        href = source.locator("a.open-doc").get_attribute("href") or ""
        assert re.fullmatch(r"/view/ledger\.png\?start=\d+&end=\d+", href)
        view = page.context.new_page()
        view.goto(server.url + href)
        assert "Odile Farrant" in view.locator("#hl").inner_text()
        view.close()
