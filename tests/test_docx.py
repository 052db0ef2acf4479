"""qa.ingest.docx: .docx paragraphs through zipfile + expat, zip and XML bombs refused."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from qa.ingest import docx
from qa.ingest.docx import DocxError, read_docx
from qa.ingest.readers import load_corpus

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"


def document_xml(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:document xmlns:w="{W}" xmlns:mc="{MC}"><w:body>{body}</w:body></w:document>'
    )


def para(*runs: str) -> str:
    return "<w:p>" + "".join(f"<w:r>{r}</w:r>" for r in runs) + "</w:p>"


def make_docx(
    body: str, *, title: str | None = None, extra: dict[str, bytes] | None = None
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", document_xml(body))
        if title is not None:
            archive.writestr(
                "docProps/core.xml",
                '<cp:coreProperties xmlns:cp="urn:cp" xmlns:dc="http://purl.org/dc/elements/1.1/">'
                f"<dc:title> {title} </dc:title></cp:coreProperties>",
            )
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_paragraphs_runs_breaks_and_skipped_markup() -> None:
    body = (
        para("<w:t>Heading</w:t>")
        + para(
            "<w:t>Free thr</w:t>",
            '<w:t xml:space="preserve">eading  is </w:t>',
            "<w:t>e\ufb00ective.</w:t>",
        )
        + "<w:p/>"
        + para("<w:t>Line one</w:t><w:br/><w:t>Line two</w:t><w:tab/><w:t>tabbed</w:t>")
        + para("<w:t>non</w:t><w:noBreakHyphen/><w:t>atomic co</w:t><w:softHyphen/><w:t>unts</w:t>")
        + para("<w:delText>deleted words</w:delText><w:t>kept</w:t>")
        + para('<w:instrText>PAGE \\* MERGEFORMAT</w:instrText><w:t>field result</w:t>')
        + para(
            "<mc:AlternateContent><mc:Choice><w:t>box text</w:t></mc:Choice>"
            "<mc:Fallback><w:p><w:r><w:t>box text again</w:t></w:r></w:p></mc:Fallback>"
            "</mc:AlternateContent>"
        )
        + "<w:tbl><w:tr><w:tc>" + para("<w:t>cell a</w:t>") + "</w:tc><w:tc>"
        + para("<w:t>cell b</w:t>") + "</w:tc></w:tr></w:tbl>"
    )  # fmt: skip

    title, text = read_docx(make_docx(body, title="Free  threading"), default_title="stem")

    assert title == "Free threading"
    assert text == (
        "Heading\n\nFree threading is effective.\n\nLine one\nLine two tabbed\n\n"
        "non-atomic counts\n\nkept\n\nfield result\n\nbox text\n\ncell a\n\ncell b"
    )


def test_title_is_a_short_first_paragraph_or_the_default() -> None:
    short = make_docx(para("<w:t>Design notes</w:t>") + para("<w:t>Body.</w:t>"))
    long = make_docx(para("<w:t>" + "word " * 50 + "</w:t>"))

    assert read_docx(short, default_title="stem")[0] == "Design notes"
    assert read_docx(long, default_title="stem")[0] == "stem"


def test_not_a_zip_and_no_document_part_are_refused() -> None:
    with pytest.raises(DocxError, match=r"^not a \.docx: not a zip archive .*save it as \.docx$"):
        read_docx(b"PK but not really a zip", default_title="x")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(
        DocxError, match=r"^not a Word document: the zip has no word/document\.xml$"
    ):
        read_docx(buf.getvalue(), default_title="x")


def test_highly_compressed_part_is_refused_as_a_zip_bomb() -> None:
    data = make_docx(para("<w:t>hi</w:t>"), extra={"word/media/pad.bin": b"\0" * 3_000_000})

    with pytest.raises(
        DocxError, match=r"^refused as a zip bomb: word/media/pad\.bin is compressed \d+ to 1 "
        r"\(limit 100 to 1\)$"
    ):  # fmt: skip
        read_docx(data, default_title="x")


def test_too_much_unpacked_or_too_many_parts_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_docx(para("<w:t>hi</w:t>"), extra={f"p{i}.xml": b"<x/>" for i in range(5)})
    monkeypatch.setattr(docx, "MAX_UNPACKED_BYTES", 100)
    with pytest.raises(
        DocxError, match=r"^refused as a zip bomb: it would unpack to \d+ bytes \(limit 100\)$"
    ):
        read_docx(data, default_title="x")
    monkeypatch.setattr(docx, "MAX_PARTS", 4)
    with pytest.raises(DocxError, match=r"^refused as a zip bomb: 7 parts \(limit 4\)$"):
        read_docx(data, default_title="x")


def test_a_part_bigger_than_declared_is_never_unpacked_past_its_size() -> None:
    data = bytearray(make_docx(para("<w:t>" + "a" * 100_000 + "</w:t>")))
    # Declare 1000 bytes for word/document.xml in its local and central directory headers.
    local = zipfile.ZipFile(io.BytesIO(data)).getinfo("word/document.xml").header_offset
    central = data.rfind(b"word/document.xml") - 46
    struct.pack_into("<I", data, local + 22, 1000)
    struct.pack_into("<I", data, central + 24, 1000)

    with pytest.raises(
        DocxError, match=r"^damaged \.docx: cannot unpack word/document\.xml \(Bad CRC-32"
    ):
        read_docx(bytes(data), default_title="x")


def test_dtd_and_entities_are_refused() -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        f'<w:document xmlns:w="{W}"><w:body>'
        "<w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("word/document.xml", laughs)

    with pytest.raises(DocxError, match=r"^refused: its XML declares a DTD or entities"):
        read_docx(buf.getvalue(), default_title="x")


def test_broken_xml_is_reported() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("word/document.xml", "<w:document><w:body>")

    with pytest.raises(
        DocxError, match=r"^damaged \.docx: word/document\.xml is not well-formed XML"
    ):
        read_docx(buf.getvalue(), default_title="x")


def test_corpus_reads_docx_and_skips_a_bomb_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.docx").write_bytes(
        make_docx(para("<w:t>Notes</w:t>") + para("<w:t>Bees make honey.</w:t>"))
    )
    (tmp_path / "bomb.docx").write_bytes(
        make_docx(para("<w:t>x</w:t>"), extra={"word/pad.xml": b" " * 5_000_000})
    )
    (tmp_path / "fake.docx").write_bytes(b"%PDF-1.4 not a docx")

    load = load_corpus(tmp_path)

    (doc,) = load.documents
    assert (doc.id, doc.title, doc.text, doc.pages) == (
        "notes.docx",
        "Notes",
        "Notes\n\nBees make honey.",
        (),
    )
    reasons = {s.path: s.reason for s in load.skipped}
    assert reasons["bomb.docx"].startswith("refused as a zip bomb: word/pad.xml is compressed")
    assert reasons["fake.docx"].startswith("not a .docx: not a zip archive")
