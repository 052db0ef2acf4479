"""qa.answering.citations: sentence spans, quote location, support checks, claims, offsets."""

from __future__ import annotations

import pytest

from qa.answering.citations import (
    Span,
    citation_for,
    content_terms,
    find_support,
    in_range,
    locate,
    markers,
    split_claims,
    split_sentences,
    support_score,
)
from qa.types import Chunk, Document, Passage

ARTICLE = (
    "On October 28 (Monday), the rules were officially issued;\n\n"
    "On the same day, Kunming issued a policy, with a maximum subsidy of 10 million yuan;\n"
    "Mr. Smith said it. The U.S. office agreed! Was it new? Yes."
)


def test_split_sentences_keeps_exact_offsets_and_drops_semicolons() -> None:
    spans = split_sentences(ARTICLE)
    assert [s.text for s in spans] == [
        "On October 28 (Monday), the rules were officially issued",
        "On the same day, Kunming issued a policy, with a maximum subsidy of 10 million yuan",
        "Mr. Smith said it.",
        "The U.S. office agreed!",
        "Was it new?",
        "Yes.",
    ]
    assert all(ARTICLE[s.start : s.end] == s.text for s in spans)


def test_split_sentences_inline_semicolon_and_initials() -> None:
    text = (
        "First batch of 197 projects; on October 18, the second batch. J. R. Tolkien wrote. "
        "The Normans (Norman: Nourmands; French: Normands) were people."
    )
    assert [s.text for s in split_sentences(text)] == [
        "First batch of 197 projects",
        "on October 18, the second batch.",
        "J. R. Tolkien wrote.",
        "The Normans (Norman: Nourmands; French: Normands) were people.",
    ]
    assert split_sentences("  \n ;  ") == ()


def test_locate_exact_then_normalised() -> None:
    text = "He said “hello   World” twice."
    assert locate("hello", text) == (9, 14)
    assert locate('"Hello World"', text) == (8, 23)
    assert text[8:23] == "“hello   World”"
    assert locate("goodbye", text) is None
    assert locate("   ", text) is None


def test_content_terms_stem_and_drop_stopwords() -> None:
    assert content_terms("The policies were issued by the Committees") == [
        "policy",
        "issu",
        "committ",
    ]
    assert content_terms("issue") == ["issu"]


def test_support_score_and_find_support() -> None:
    passage = (
        "The National Network Information Office issued the Regulations on January 10, 2019. "
        "Therefore, the Regulations require providers to fill in the filing information."
    )
    assert support_score("The office issued the Regulations [1]", passage) == 1.0
    assert support_score("Bananas are yellow", passage) == 0.0
    span, score = find_support("Providers must fill in the filing information [1].", passage)
    assert span.text == (
        "Therefore, the Regulations require providers to fill in the filing information."
    )
    assert passage[span.start : span.end] == span.text
    assert score == 0.8  # all content terms but "must"
    assert find_support("Bananas are yellow.", passage) is None
    exact = find_support("issued the regulations on January 10, 2019", passage)
    assert exact == (Span("issued the Regulations on January 10, 2019", 40, 82), 1.0)


def test_citation_for_maps_chunk_offsets_to_the_document() -> None:
    document = "Title\n\n" + ARTICLE
    start = document.index("On the same day")
    chunk = Chunk("c1", "doc", "Title", document[start:], start, len(document), 30, page=2)
    passage = Passage(chunk, 0.8, 3)
    sentence = split_sentences(chunk.text)[0]
    cite = citation_for(passage, sentence.start, sentence.end, supported=True)
    assert (cite.n, cite.chunk_id, cite.doc_id, cite.page, cite.supported) == (
        3,
        "c1",
        "doc",
        2,
        True,
    )
    assert document[cite.start : cite.end] == cite.quote == sentence.text
    with pytest.raises(ValueError, match="outside chunk c1"):
        citation_for(passage, 0, len(chunk.text) + 1, supported=True)


def test_citation_page_is_where_the_quote_lies_not_where_the_chunk_starts() -> None:
    text = "Page one ends here. " + "Page two starts here with the quoted claim."
    second = text.index("Page two")
    document = Document("doc", "Title", text, "doc.pdf", "h", pages=(0, second))
    chunk = Chunk("c1", "doc", "Title", text, 0, len(text), 12, page=1)  # spans both pages
    passage = Passage(chunk, 0.8, 1)
    quote = (second, len(text))
    assert citation_for(passage, *quote, supported=True, document=document).page == 2
    assert citation_for(passage, 0, second - 1, supported=True, document=document).page == 1
    assert citation_for(passage, *quote, supported=True).page == 1  # no document: the chunk's
    # An LLM answer's citations (grounding) get the page from the store's document lookup.
    from qa.answering.grounding import ground

    grounded = ground(
        "It starts here with the quoted claim [1].", [passage], documents={"doc": document}.get
    )
    (cite,) = grounded.citations
    assert cite.supported and cite.start >= second and cite.page == 2


def test_split_claims_and_markers() -> None:
    answer = "Paris is big [1]. It is old. [2][3] Nobody knows [9]!"
    assert [(c.text, c.ns) for c in split_claims(answer)] == [
        ("Paris is big", (1,)),
        ("It is old", (2, 3)),
        ("Nobody knows", (9,)),
    ]
    assert markers(answer) == [1, 2, 3, 9]
    assert in_range(markers(answer), 3) == ([1, 2, 3], [9])
