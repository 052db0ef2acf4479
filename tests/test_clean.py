"""qa.ingest.clean: PDF page text into paragraphs, running lines dropped, pages re-mapped."""

from __future__ import annotations

from pathlib import Path

from qa.ingest.chunking import Chunker
from qa.ingest.clean import CleanText, clean_pages, tidy
from qa.ingest.readers import load_corpus
from qa.ingest.tokens import get_encoding
from tests.pdf_writer import Line, pdf_bytes

# Full lines of a 56-60 character column, as pypdf extracts them (one line per printed line).
PAGE_1 = [
    "Journal of Examples, Vol. 12",
    "Free threading changes how the interpreter protects its",
    "objects. Reference counts are updated without the in-",
    "terpreter lock, so each update must be atomic or biased.",
    "That is the whole problem.",
    "A well-known technique keeps a thread-local count for the",
    "owning thread and a shared count for all other threads; the",
    "1",
]
PAGE_2 = [
    "Journal of Examples, Vol. 12",
    "owner updates its own count with plain, non-atomic multi-",
    "core friendly instructions, which is why multi-core hosts",
    "scale. The scheme is cheap because objects are almost al-",
    "ways used by the thread that created them, and it is well-",
    "known from earlier work on biased locking in Java VMs.",
    "2",
]
PAGE_3 = [
    "Journal of Examples, Vol. 12",
    "2 Design",
    "The allocator is mimalloc, which ships with the state-of-",
    "the-art heaps of the allocator that was written for COVID-",
    "19 era services.",
    "3",
]
PAGES = ["\n".join(PAGE_1), "\n".join(PAGE_2), "\n".join(PAGE_3)]


def test_pages_become_paragraphs_with_words_joined_and_real_hyphens_kept() -> None:
    text = clean_pages(PAGES).text

    # The header and the page numbers recur on all 3 pages: dropped.
    # "in-terpreter": the document never writes "in-terpreter" -> the typesetter's hyphen goes.
    # "multi-core": written so elsewhere, never "multicore" -> kept. "well-known" likewise.
    # "al-ways": neither form elsewhere -> joined, as most line-end hyphens in prose are.
    # "state-of-" already has a hyphen -> kept; "COVID-" before a digit -> kept, no space.
    # Full lines wrap (a space), even across pages; a short line after a sentence end closes
    # its paragraph; "2 Design" (short, no sentence end, after one) is a heading.
    assert text == (
        "Free threading changes how the interpreter protects its objects. Reference counts are"
        " updated without the interpreter lock, so each update must be atomic or biased. That"
        " is the whole problem.\n\n"
        "A well-known technique keeps a thread-local count for the owning thread and a shared"
        " count for all other threads; the owner updates its own count with plain, non-atomic"
        " multi-core friendly instructions, which is why multi-core hosts scale. The scheme is"
        " cheap because objects are almost always used by the thread that created them, and it"
        " is well-known from earlier work on biased locking in Java VMs.\n\n"
        "2 Design\nThe allocator is mimalloc, which ships with the state-of-the-art heaps of the"
        " allocator that was written for COVID-19 era services."
    )


ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]


def test_running_headers_and_page_numbers_are_dropped() -> None:
    def body(page: int, line: int) -> str:
        return f"On the {ORDINALS[page]} page, the {ORDINALS[line]} line is long enough for prose."

    pages = [
        ["Title page" if i == 0 else ("Even header" if i % 2 else "Odd header")]
        + [body(i, j) for j in range(8)]
        + [f"Page {i + 1} of 7"]
        for i in range(7)
    ]
    # Mid-page the same line is text, not a running line.
    pages[2].insert(5, "Even header")

    cleaned = clean_pages(["\n".join(p) for p in pages])

    # "Even header" and "Odd header" each top 3 of 7 pages (>= 40 %), "Page # of 7" all 7.
    lines = [body(i, j) for i in range(7) for j in range(8)]
    assert cleaned.text == (
        "Title page\n" + " ".join(lines[:20]) + "\n\nEven header\n" + " ".join(lines[20:])
    )
    assert [cleaned.text[s : s + 12] for s in cleaned.pages] == ["Title page\nO"] + [
        f"On the {ORDINALS[i]}"[:12] for i in range(1, 7)
    ]


def test_few_pages_keep_their_repeated_lines() -> None:
    cleaned = clean_pages(["Header\nHello page one.", "Header\nSecond page here."])

    assert cleaned == CleanText("Header\nHello page one.\n\nHeader\nSecond page here.", (0, 24))


def test_page_starts_follow_the_cleaned_text() -> None:
    pages = ["\n".join(PAGE_1), "", "\n".join(PAGE_2), "\n".join(PAGE_3)]

    cleaned = clean_pages(pages)

    text, starts = cleaned.text, cleaned.pages
    assert starts[0] == 0
    # The empty page 2 starts where page 3 does; page 3 starts mid-sentence, after the space.
    assert starts[1] == starts[2]
    assert text[starts[2] - 5 : starts[2]] == " the "
    assert text[starts[2] :].startswith("owner updates its own count")
    assert text[starts[3] :].startswith("2 Design\n")


def test_a_word_cut_across_pages_belongs_to_the_page_it_starts_on() -> None:
    line = "Every full line of this column runs to the right margin, so"
    cleaned = clean_pages([f"{line}\n{line} in-", f"tegrity is kept.\n{line}."])

    assert cleaned.text == f"{line} {line} integrity is kept.\n\n{line}."
    start = cleaned.pages[1]
    assert cleaned.text[start - 2 : start + 7] == "integrity"


def test_narrow_lines_are_not_unwrapped() -> None:
    # A table or a poem: no line reaches the prose width, so every break is kept.
    cleaned = clean_pages(["Name  Count\nApples 3\nPears 4\nFigs 12"])

    assert cleaned.text == "Name Count\nApples 3\nPears 4\nFigs 12"


def test_list_items_and_blank_lines_break_lines() -> None:
    lead = "The interpreter needs three changes before it runs safely:"
    cleaned = clean_pages(
        [f"{lead}\n• reference counting that is thread safe enough\n• a thread-safe allocator"
         f"\n\nA paragraph after a blank line of the extractor starts here."]
    )  # fmt: skip

    assert cleaned.text == (
        f"{lead}\n• reference counting that is thread safe enough\n• a thread-safe allocator"
        "\n\nA paragraph after a blank line of the extractor starts here."
    )


def test_tidy_spells_out_ligatures_and_drops_invisible_characters() -> None:
    assert tidy("  ef\ufb01cient\u00ad ly  \u200bdone \n\n\n\nnext\u00a0 line\n") == (
        "efficient ly done\n\nnext line"
    )


def test_soft_hyphen_at_a_line_end_joins_the_word() -> None:
    line = "A full line of prose that runs all the way to the margin: ex\u00ad"
    cleaned = clean_pages([f"{line}\nample text follows on the next line, which is long enough."])

    assert "margin: example text" in cleaned.text


def test_pdf_document_is_clean_and_chunks_keep_their_page(tmp_path: Path) -> None:
    header = Line("Journal of Examples, Vol. 12", y=760)
    pages: list[list[str | Line]] = [
        [header, *PAGE_1[1:-1], Line("1", y=40)],
        [header, *PAGE_2[1:-1], Line("2", y=40)],
        [header, *PAGE_3[1:-1], Line("3", y=40)],
    ]
    (tmp_path / "paper.pdf").write_bytes(pdf_bytes(pages, title="Biased counts"))

    (doc,) = load_corpus(tmp_path).documents

    expected = clean_pages(PAGES)
    assert (doc.text, doc.pages) == (expected.text, expected.pages)
    assert "Journal" not in doc.text and "\n1\n" not in doc.text
    chunks = Chunker(get_encoding("cl100k_base"), chunk_tokens=24, overlap=4).chunk(doc)
    assert len(chunks) > 4
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.page == doc.page_at(chunk.start)
    assert doc.page_at(doc.text.index("whole problem")) == 1
    assert doc.page_at(doc.text.index("owner updates")) == 2
    assert doc.page_at(doc.text.index("The allocator")) == 3


def test_a_compound_of_two_words_keeps_its_hyphen() -> None:
    lines = [
        "Readers read the table and writers update it, which is mostly",
        "fine: the structure that every workload we measured is read-",
        "mostly, so readers never wait. Threads that are asked to re-",
        "attach to the interpreter wait for the collector to finish.",
    ]

    text = clean_pages(["\n".join(lines)]).text

    # "read" and "mostly" are words of the document: "read-mostly"; "re" is not: "reattach".
    assert "we measured is read-mostly, so readers" in text
    assert "Threads that are asked to reattach to the interpreter" in text
