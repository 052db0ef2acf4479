"""The extractive answerer on the real model: exact citations, short answers, abstention."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pytest

from qa.answering.extractive.answerer import NOT_FOUND, ExtractiveAnswerer
from qa.answering.extractive.guards import date_clash, negation_lost, opposite_word, word_cover
from qa.answering.extractive.phrases import phrases
from qa.answering.extractive.spans import short_answer
from qa.answering.followup import rewrite_followup
from qa.answering.registry import Resources, create_answerer
from qa.config import Settings
from qa.embedding.models import Embedder
from qa.ingest.readers import make_document
from qa.retrieval.retriever import Retriever
from qa.stores.faiss.store import FaissStore
from qa.types import Answer, Chunk, Document, Passage, Turn
from tests.conftest import DATA, DEMO_CORPUS, DEMO_DOC_ID, DEMO_QUESTIONS

NORMANS_0 = (
    "The Normans (Norman: Nourmands; French: Normands; Latin: Normanni) were the people who in "
    "the 10th and 11th centuries gave their name to Normandy, a region in France."
)


def passages_of(doc: Document, *texts: str, score: float = 0.6) -> tuple[Passage, ...]:
    """Hand-made passages: each text is located in the document, as a chunk would be."""
    out = []
    for rank, text in enumerate(texts, start=1):
        start = doc.text.index(text)
        chunk = Chunk(f"c{rank}", doc.id, doc.title, text, start, start + len(text), 50)
        out.append(Passage(chunk, score, rank))
    return tuple(out)


def squad_document(doc_id: str) -> Document:
    """A SQuAD 2.0 paragraph from tests/data (CC BY-SA 4.0; see tests/data/README.md)."""
    for line in (DATA / "squad2-normans.jsonl").open(encoding="utf-8"):
        record = json.loads(line)
        if record["id"] == doc_id:
            return make_document(record["id"], record["title"], record["text"], "corpus.jsonl")
    raise AssertionError(doc_id)


@pytest.fixture(scope="module")
def answerer(embedder: Embedder, demo_settings: Settings) -> ExtractiveAnswerer:
    """The registered answerer, looking documents up in the demo index as the pipeline does
    (a SQuAD paragraph is not there: its passages are quoted as they are)."""
    store = FaissStore.load(demo_settings.index_dir, demo_settings)
    made = create_answerer("extractive", demo_settings, Resources(embedder, store.document))
    assert isinstance(made, ExtractiveAnswerer)
    return made


@pytest.fixture(scope="module")
def demo(demo_settings: Settings, embedder: Embedder) -> tuple[Retriever, Document]:
    store = FaissStore.load(demo_settings.index_dir, demo_settings)
    return Retriever(store, embedder, demo_settings), store.document(DEMO_DOC_ID)


def demo_questions() -> list[dict]:
    return [json.loads(line) for line in DEMO_QUESTIONS.open()]


def ask(answerer: ExtractiveAnswerer, retriever: Retriever, q: dict) -> Answer:
    history = [Turn("user", h) for h in q.get("history", [])]
    standalone = rewrite_followup(q["question"], history)
    return answerer.answer(standalone, retriever.retrieve(standalone, 5))


def test_normandy_country_is_the_france_sentence(answerer: ExtractiveAnswerer) -> None:
    doc = squad_document("Normans#0")
    passages = passages_of(doc, doc.text)
    question = "In what country is Normandy located?"
    # Answered at the calibrated threshold: the window around the sentence matches the question
    # better than the sentence alone ("context_sim"), although "country" and "located" are not
    # in the text.
    answer = answerer.answer(question, passages)
    # One passage with a made-up retrieval score: offered at least as the closest passage,
    # with the verifier's short answer in it.
    assert answer.kind in ("answered", "closest")
    assert answerer.analyse(question, passages).short_answer(question) == "France"
    assert answer.answer.endswith(f"{NORMANS_0} [1]")
    (cite,) = answer.citations
    assert (cite.n, cite.start, cite.end, cite.supported) == (1, 0, len(NORMANS_0), True)
    assert doc.text[cite.start : cite.end] == cite.quote == NORMANS_0


def test_every_demo_citation_is_exact_in_the_source_document(
    answerer: ExtractiveAnswerer, demo: tuple[Retriever, Document]
) -> None:
    retriever, document = demo
    n_citations = 0
    for q in demo_questions():
        answer = ask(answerer, retriever, q)
        for cite in answer.citations:
            assert document.text[cite.start : cite.end] == cite.quote, q["id"]
            assert cite.supported and cite.doc_id == DEMO_DOC_ID
            passage = answer.passages[cite.n - 1]
            assert passage.rank == cite.n and passage.chunk.id == cite.chunk_id
            assert f"{cite.quote} [{cite.n}]" in answer.answer
            n_citations += 1
        assert answer.abstained == (not answer.citations)
    assert n_citations >= 40


@pytest.mark.parametrize(
    ("question", "short", "quote"),
    [
        (
            "On what date were the implementation rules of the Blockchain Policy 2.0 of Huangpu "
            "District of Guangzhou City officially issued?",
            "October 28",
            "On October 28 (Monday), the implementation rules of the Blockchain Policy 2.0 of "
            "Huangpu District of Guangzhou City were officially issued",
        ),
        (
            "What is the maximum subsidy in Kunming's digital economy policy for demonstration "
            "applications such as blockchains?",
            "10 million yuan",
            "On the same day, Kunming issued a digital economy policy, with a maximum subsidy of "
            "10 million yuan for demonstration applications such as blockchains",
        ),
        (
            "How many filing projects were in the first batch distributed by the national "
            "network letter office?",
            "197",
            "On March 30 this year, the national network letter office distributed the first "
            "batch of 197 filing projects",
        ),
    ],
)
def test_demo_short_answers_and_quotes(
    answerer: ExtractiveAnswerer,
    demo: tuple[Retriever, Document],
    question: str,
    short: str,
    quote: str,
) -> None:
    retriever, _ = demo
    answer = ask(answerer, retriever, {"question": question})
    assert answer.short_answer == short
    assert answer.citations[0].quote == quote
    assert answer.answer.startswith(f"{quote} [")


def test_abstains_on_unanswerable_demo_questions(
    answerer: ExtractiveAnswerer, demo: tuple[Retriever, Document]
) -> None:
    retriever, _ = demo
    unanswerable = [q for q in demo_questions() if not q["answerable"]]
    answers = {q["id"]: ask(answerer, retriever, q) for q in unanswerable}
    abstained = {i for i, a in answers.items() if a.abstained}
    # A floor: each rule below still abstains; abstaining on more of the 12 is an improvement.
    assert abstained >= ABSTAINED_UNANSWERABLE, sorted(ABSTAINED_UNANSWERABLE - abstained)
    # And at most 4 of the 12 are given as answers (the rest abstain or offer the closest).
    assert sum(a.kind == "answered" for a in answers.values()) <= 4


# Measured with the calibrated defaults: at least these 5 of the 12, each by the rule named.
# (The span rule yields where the verifier reads the sentence as the answer: "how many
# enterprises", the approval date and "how many experts" are no longer refused by it.)
ABSTAINED_UNANSWERABLE = {
    "demo-046",  # Shenzhen: not in the article (key-word rule)
    "demo-048",  # a "third" batch: not in the article (key-word rule)
    "demo-051",  # how much money: "hundreds" of institutions is no amount of money (span rule)
    "demo-056",  # how much funding (span rule)
    "demo-057",  # "as of October 2019": the matching sentence says May 2019 (date rule)
}


def test_abstained_answer_shape(answerer: ExtractiveAnswerer) -> None:
    doc = squad_document("Normans#0")
    passages = passages_of(doc, doc.text)
    strict = ExtractiveAnswerer(answerer.embedder, abstain_threshold=1.0)
    answer = strict.answer("Who led the Normans, and what did they eat?", passages)
    assert answer.abstained and answer.answer == NOT_FOUND
    assert answer.citations == () and answer.short_answer is None
    assert answer.abstain_reason is not None
    assert re.fullmatch(
        r"The best passages match the question weakly \(confidence 0\.\d\d < threshold 1\.00\); "
        r"they lack the question's words 'led', 'eat'\.",
        answer.abstain_reason,
    )
    # A year the passages never mention: abstain whatever the threshold.
    unknown = answerer.answer("Who ruled Normandy in 1998?", passages)
    assert unknown.abstained
    assert re.fullmatch(
        r"The documents do not mention '1998' \(confidence 0\.\d\d\)\.",
        unknown.abstain_reason or "",
    )
    empty = answerer.answer("Anything?", ())
    assert empty.abstained and empty.abstain_reason == "No passage was retrieved for the question."


class CountingEmbedder:
    """Wraps the real embedder and records how many texts it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.embedded: list[int] = []

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.embedded.append(len(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def test_sentence_vectors_are_embedded_once_in_one_batch(embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    fresh = ExtractiveAnswerer(counting, abstain_threshold=0.0)  # type: ignore[arg-type]
    doc = squad_document("Normans#0")
    passages = passages_of(doc, doc.text)
    first = fresh.answer("In what country is Normandy located?", passages)
    again = fresh.answer("Who was the Norse leader?", passages)
    assert counting.embedded == [4]  # four sentences, one batch, then all from the cache
    assert first.short_answer == "France" and again.short_answer == "Rollo"


@pytest.mark.parametrize(
    ("question", "sentence", "short"),
    [
        (
            "What kind of arches does Norman architecture have?",
            "Their style was characterised by rounded arches, particularly over windows and "
            "doorways, and massive proportions.",
            "rounded",
        ),
        (
            "Other than surf, what other culture is southern California home to?",
            "Southern California is also home to a large home grown surf and skateboard culture.",
            "skateboard",
        ),
        (
            "Is a problem instance typically characterized as abstract or concrete?",
            "A problem instance is a concrete utterance, which can serve as the input.",
            "concrete",
        ),
    ],
)
def test_untyped_what_questions_get_a_phrase(question: str, sentence: str, short: str) -> None:
    found = short_answer(question, sentence)
    assert found is not None and found.text == short
    assert sentence[found.start : found.end] == short


def test_phrases_skip_question_words_verbs_and_adverbs() -> None:
    sentence = "Closely related fields are referred to as computability theory."
    texts = [s.text for s in phrases(sentence, {"field"})]
    assert texts == ["related", "computability theory"]


def test_money_question_wants_an_amount_of_money() -> None:
    sentence = "Hundreds of institutions closed, and investors suffered losses of 3 million yuan."
    question = "How much money did investors lose?"
    found = short_answer(question, sentence)
    assert found is not None and found.text == "3 million yuan"
    assert short_answer(question, "Hundreds of institutions closed directly.") is None


def test_word_cues_of_adversarial_questions() -> None:
    assert negation_lost("What is not used to assess resources?", "Models are used.") == 1.0
    assert negation_lost("Whether or not it can be solved?", "It can be solved.") == 0.0
    assert negation_lost("What is not used?", "It is not used.") == 0.0
    assert opposite_word("What is the smallest county?", "The largest county is Kern.") == (
        "smallest"
    )
    assert opposite_word("What is the largest county?", "The largest county is Kern.") is None
    assert date_clash("How many were in the second batch?", "the first batch of 197", set()) == (
        "second",
        "first",
    )
    assert word_cover("the lawyers argue", "The lawyer argued it.") == 1.0
    assert word_cover("the lawyers sign", "The lawyer argued it.") == 0.5


def test_negated_question_is_refused(answerer: ExtractiveAnswerer) -> None:
    doc = squad_document("Normans#0")
    passages = passages_of(doc, doc.text)
    answer = answerer.answer("What country is Normandy not located in?", passages)
    assert answer.abstained
    assert answer.abstain_reason is not None
    assert answer.abstain_reason.startswith(
        "The question asks about what is not so; the quoted sentence says what is"
    )


@pytest.mark.parametrize(
    ("chunk_from", "chunk_to"),
    [("gave their name", None), (None, "a region in France")],
    ids=["cut-at-chunk-start", "cut-at-chunk-end"],
)
def test_quote_straddling_a_chunk_edge_is_the_whole_sentence(
    embedder: Embedder, chunk_from: str | None, chunk_to: str | None
) -> None:
    squad = squad_document("Normans#0")
    # Page 2 starts inside the first sentence, where the cut chunk starts: the quote starts on
    # page 1, so its citation says page 1 whatever the chunk's page.
    page_2 = squad.text.index("gave their name")
    doc = make_document(squad.id, squad.title, squad.text, "normans.pdf", pages=(0, page_2))
    start = squad.text.index(chunk_from) if chunk_from else 0
    end = squad.text.index(chunk_to) if chunk_to else len(squad.text)
    chunk = Chunk("c1", doc.id, doc.title, doc.text[start:end], start, end, 50, doc.page_at(start))
    documents = {doc.id: doc}
    answerer = ExtractiveAnswerer(embedder, abstain_threshold=0.0, documents=documents.__getitem__)
    answer = answerer.answer("In what country is Normandy located?", (Passage(chunk, 0.6, 1),))
    (cite,) = answer.citations
    assert cite.quote == NORMANS_0 and (cite.start, cite.end) == (0, len(NORMANS_0))
    assert doc.text[cite.start : cite.end] == cite.quote
    assert cite.page == 1 and cite.chunk_id == "c1"
    assert answer.answer == f"{NORMANS_0} [1]"
    # Without a way to look the document up, the quote is what the chunk holds of it.
    alone = ExtractiveAnswerer(embedder, abstain_threshold=0.0).answer(
        "In what country is Normandy located?", (Passage(chunk, 0.6, 1),)
    )
    assert alone.citations[0].quote != NORMANS_0
    assert NORMANS_0.find(alone.citations[0].quote) >= 0


def test_who_question_over_passages_that_name_nobody_abstains(embedder: Embedder) -> None:
    text = (
        "The Trusted Blockchain Program was launched in 2018 to promote common standards. "
        "The program publishes a list of certified platforms every quarter. "
        "More than two hundred member companies take part in its working groups."
    )
    doc = make_document("program.txt", "Program", text, "program.txt")
    passages = passages_of(doc, text)
    answerer = ExtractiveAnswerer(embedder, abstain_threshold=0.0)
    answer = answerer.answer(
        "Who is the chief executive of the Trusted Blockchain Program?", passages
    )
    assert answer.abstained and answer.citations == ()
    assert answer.abstain_reason is not None and answer.abstain_reason.startswith(
        "No quoted sentence holds the name of a person or body the question asks for"
    )
    # The same passages answer a question of another kind.
    answered = answerer.answer("When was the Trusted Blockchain Program launched?", passages)
    assert not answered.abstained and answered.short_answer == "2018"


def test_has_short_answer_agrees_with_short_answer() -> None:
    """The answerer's cheap existence check (`_cue` on every sentence) and the full scoring
    agree for every demo question against every sentence of the demo corpus."""
    from qa.answering.citations import split_sentences
    from qa.answering.extractive.spans import has_short_answer, question_type

    text = (DEMO_CORPUS / DEMO_DOC_ID).read_text()
    sentences = [span.text for span in split_sentences(text)]
    questions = [json.loads(line)["question"] for line in DEMO_QUESTIONS.read_text().splitlines()]
    typed = [(q, k) for q in questions if (k := question_type(q)) is not None]
    assert len(typed) >= 20 and len(sentences) >= 50
    found = 0
    for question, kind in typed:
        for sentence in sentences:
            want = short_answer(question, sentence, kind) is not None
            assert has_short_answer(question, sentence, kind) == want, (question, sentence)
            found += want
    assert 0 < found < len(typed) * len(sentences)  # both outcomes are exercised
