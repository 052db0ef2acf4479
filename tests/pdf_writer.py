"""Write small valid PDFs of text lines, for tests and benchmarks (no PDF library needed).

Each page is a list of lines drawn top-down in Helvetica (WinAnsi encoding, so a soft hyphen
"\\u00ad" is one byte). A line is a string, or a `Line` with its own font, size, indent and
extra space above it (a paragraph gap, a heading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FONTS = {"F1": "Helvetica", "F2": "Helvetica-Bold", "F3": "Courier"}
PAGE_WIDTH, PAGE_HEIGHT = 612, 792
TOP, LEFT = 740, 72


@dataclass(frozen=True)
class Line:
    """One line of text and how it is set."""

    text: str
    font: str = "F1"
    size: float = 10
    indent: float = 0
    space_before: float = 0
    y: float | None = None  # an absolute baseline (running headers and footers)


def pdf_bytes(pages: Sequence[Sequence[str | Line]], *, title: str | None = None) -> bytes:
    """A PDF with one page per item of `pages`, each line set 12 points below the last."""
    font_ids = {key: 3 + i for i, key in enumerate(FONTS)}
    first_page = 3 + len(FONTS)
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(len(pages)))
    fonts = " ".join(f"/{key} {n} 0 R" for key, n in font_ids.items())
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        *(
            f"<< /Type /Font /Subtype /Type1 /BaseFont /{name} "
            "/Encoding /WinAnsiEncoding >>".encode()
            for name in FONTS.values()
        ),
    ]
    for i, lines in enumerate(pages):
        content = _content(lines)
        page = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] "
            f"/Resources << /Font << {fonts} >> >> /Contents {first_page + 2 * i + 1} 0 R >>"
        )
        objects.append(page.encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    info = ""
    if title is not None:
        objects.append(b"<< /Title (" + _escape(title) + b") >>")
        info = f" /Info {len(objects)} 0 R"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _content(lines: Sequence[str | Line]) -> bytes:
    parts: list[bytes] = []
    y = TOP
    for item in lines:
        line = Line(item) if isinstance(item, str) else item
        if line.y is None:
            y -= line.space_before
            at = y
            y -= 12
        else:
            at = line.y
        parts.append(
            b"BT /%s %g Tf %g %g Td (" % (line.font.encode(), line.size, LEFT + line.indent, at)
            + _escape(line.text)
            + b") Tj ET"
        )
    return b"\n".join(parts)


def _escape(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
