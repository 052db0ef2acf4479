"""qa.ingest.readers: loading a folder of txt, md, html, pdf and jsonl files into Documents."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from qa.errors import CorpusError
from qa.ingest.readers import FileInfo, Skipped, document_hash, load_corpus
from tests.pdf_writer import pdf_bytes


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page."""
    return pdf_bytes([[text] for text in pages], title=title)


def test_txt_and_md_ids_titles_and_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("\n\n## Bee facts \n\nBees make honey.\n")
    (tmp_path / "a.txt").write_text("Ants\n\nAnts carry leaves.\r\nThey cooperate.\n")
    (tmp_path / "z.TXT").write_text("Zebras have stripes.")
    (tmp_path / "notes.odt").write_bytes(b"ignored: unknown extension")
    (tmp_path / ".hidden.txt").write_text("ignored: hidden file")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("ignored: hidden folder")

    load = load_corpus(tmp_path)

    assert [d.id for d in load.documents] == ["a.txt", "sub/b.md", "z.TXT"]
    a, b, z = load.documents
    assert (a.title, a.text, a.source) == (
        "Ants",
        "Ants\n\nAnts carry leaves.\nThey cooperate.\n",
        "a.txt",
    )
    assert (b.title, b.text) == ("Bee facts", "\n\n## Bee facts \n\nBees make honey.\n")
    assert z.title == "Zebras have stripes."
    assert a.content_hash == hashlib.sha256(f"{a.title}\0{a.text}".encode()).hexdigest()
    assert a.content_hash == document_hash(a.title, a.text)
    assert a.pages == () and a.page_at(3) is None
    assert load.skipped == ()
    assert load.files == (
        FileInfo("a.txt", hashlib.sha256((tmp_path / "a.txt").read_bytes()).hexdigest()),
        FileInfo("sub/b.md", hashlib.sha256((tmp_path / "sub" / "b.md").read_bytes()).hexdigest()),
        FileInfo("z.TXT", hashlib.sha256((tmp_path / "z.TXT").read_bytes()).hexdigest()),
    )
    assert load_corpus(tmp_path) == load


def test_long_first_line_is_not_a_title(tmp_path: Path) -> None:
    (tmp_path / "essay.txt").write_text("word " * 100 + "\n\nMore.")
    assert load_corpus(tmp_path).documents[0].title == "essay"


def test_html_keeps_visible_text_only(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        "<!doctype html><html><head><title> The  Page </title>"
        "<style>body { color: red }</style><script>var secret = 1;</script></head>"
        "<body><h1>Heading</h1><p>First <b>bold</b>\n  paragraph.<!-- a comment --></p>"
        "<script>alert('x')</script><div>Line one<br>Line two</div>"
        "<ul><li>item a</li><li>item b</li></ul><noscript>enable js</noscript></body></html>"
    )
    (tmp_path / "bare.htm").write_text("<p>No title here.</p><h2>Sub</h2>")
    (tmp_path / "plain.htm").write_text("<p>Nothing but a paragraph.</p>")

    docs = {d.id: d for d in load_corpus(tmp_path).documents}

    page = docs["page.html"]
    assert page.title == "The Page"
    assert page.text == (
        "Heading\n\nFirst bold paragraph.\n\nLine one\nLine two\n\nitem a\n\nitem b"
    )
    assert docs["bare.htm"].title == "Sub"
    assert docs["plain.htm"].title == "plain"


def test_pdf_pages_and_title(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(
        make_pdf(["Hello page one.", "Second page here."], "Report")
    )
    (tmp_path / "untitled.pdf").write_bytes(make_pdf(["Only page."]))

    docs = {d.id: d for d in load_corpus(tmp_path).documents}

    report = docs["report.pdf"]
    assert report.title == "Report"
    assert report.text == "Hello page one.\n\nSecond page here."
    assert report.pages == (0, 17)
    assert report.text[17:] == "Second page here."
    assert (report.page_at(0), report.page_at(16), report.page_at(17)) == (1, 1, 2)
    assert docs["untitled.pdf"].title == "untitled"


def test_jsonl_bad_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "docs.jsonl").write_text(
        '{"id": "d1", "title": "One", "text": "First text."}\n'
        "{not json\n"
        "\n"
        '{"id": 7, "title": "Seven", "text": "Seventh text."}\n'
        '{"id": "d3", "title": "No text"}\n'
    )
    with caplog.at_level(logging.WARNING, logger="qa.ingest.readers"):
        load = load_corpus(tmp_path)

    assert [(d.id, d.title, d.text, d.source) for d in load.documents] == [
        ("7", "Seven", "Seventh text.", "docs.jsonl"),
        ("d1", "One", "First text.", "docs.jsonl"),
    ]
    assert [s.path for s in load.skipped] == ["docs.jsonl:2", "docs.jsonl:5"]
    assert load.skipped[1].reason == '"text" must be a non-empty string'
    assert "docs.jsonl:2" in caplog.text and "docs.jsonl:5" in caplog.text


def test_jsonl_without_any_document_is_one_skipped_file(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Good text.")
    (tmp_path / "questions.jsonl").write_text('{"id": "q1", "question": "Why?"}\n' * 50)

    load = load_corpus(tmp_path)

    assert [d.id for d in load.documents] == ["good.txt"]
    assert load.skipped == (
        Skipped(
            "questions.jsonl",
            'no valid {"id", "title", "text"} line '
            '(questions.jsonl:1: "text" must be a non-empty string)',
        ),
    )


def test_non_utf8_and_broken_files_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "good.txt").write_text("Good text.")
    (tmp_path / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "blank.md").write_text("  \n\n ")
    with caplog.at_level(logging.WARNING, logger="qa.ingest.readers"):
        load = load_corpus(tmp_path)

    assert [d.id for d in load.documents] == ["good.txt"]
    reasons = {s.path: s.reason for s in load.skipped}
    assert set(reasons) == {"blank.md", "broken.pdf", "latin1.txt"}
    assert reasons["latin1.txt"].startswith("not UTF-8 (invalid continuation byte at byte 3)")
    assert reasons["broken.pdf"].startswith("unreadable PDF")
    assert reasons["blank.md"] == "no text in it"
    assert "latin1.txt" in caplog.text and "broken.pdf" in caplog.text
    assert len(load.files) == 4


def test_duplicate_id_keeps_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "x", "title": "A", "text": "From a."}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "x", "title": "B", "text": "From b."}\n')

    load = load_corpus(tmp_path)

    assert [(d.id, d.text) for d in load.documents] == [("x", "From a.")]
    assert load.skipped == (Skipped("b.jsonl", "duplicate document id 'x' (first from a.jsonl)"),)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    with pytest.raises(
        CorpusError,
        match=r"corpus/ is empty: put \.txt, \.md, \.html, \.pdf, \.docx or \.jsonl files in it\.$",
    ):
        load_corpus(tmp_path / "corpus")


def test_folder_with_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CorpusError, match=r"holds no readable document.*bad\.txt \(not UTF-8"):
        load_corpus(tmp_path)


def test_missing_folder_and_file_instead_of_folder(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"nowhere/ does not exist: create it"):
        load_corpus(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CorpusError, match=r"file\.txt is a file, not a folder"):
        load_corpus(tmp_path / "file.txt")
