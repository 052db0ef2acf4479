"""`extractive`: the offline default answerer. It quotes the answer sentence(s) verbatim.

No reader model ships offline, so the answer is found by scoring every sentence of the
retrieved passages on four cues: embedding similarity with the question (MiniLM, one batch,
vectors cached by text), IDF-weighted overlap of content words, whether the sentence holds
the kind of span the question asks for (a date for "when", a number for "how many", ...), and
the passage's retrieval score. The best sentence is quoted with its `[n]` marker (plus a
second one when it covers question words the first misses; `sentences`),
`short_answer` is the best span in it (`spans`, `phrases`), and a
logistic confidence decides whether to abstain (fitted, with the default threshold, by
`bench/answer_quality.py --fit`). Rules in `guards` abstain whatever the
confidence: a name/number/ordinal of the question that no passage mentions, a negated
question ("What is *not* ...?") against a sentence that negates nothing, a "when"/"how
many"/"who" question whose quoted sentences hold no date/number/name besides the question's
own, and a month/year/ordinal of the question that the best-matching sentence contradicts ("as
of October 2019" against "As of May 2019"); such a sentence is also ranked down, so one
holding the asked-for date wins. Quotes are whole sentences of the document, also where a
chunk boundary cuts one (`sentences`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from qa.answering.citations import content_terms, quote_citation, stem
from qa.answering.extractive.guards import (
    GUARDS,
    TYPED_KINDS,
    WORDS,
    Guard,
    date_clash,
    guard_reason,
    key_cover,
    negation_lost,
    opposite_word,
    word_cover,
)
from qa.answering.extractive.sentences import (
    Scored,
    context_terms,
    coverage,
    idf_of,
    second_sentence,
    sent_terms_of,
    sentences_of,
    window_vectors,
)
from qa.answering.extractive.spans import has_short_answer, question_type, short_answer
from qa.errors import QAError
from qa.resources import verifier_version
from qa.types import Answer, Chunk, Document, Passage, Turn

if TYPE_CHECKING:
    from qa.answering.registry import Registry, Resources
    from qa.answering.verifier import Verdict, Verifier
    from qa.config import Settings
    from qa.embedding.models import Embedder

log = logging.getLogger(__name__)

NAME = "extractive"
DESCRIPTION = "Offline default: quotes the best-matching sentences verbatim (no LLM)."
NOT_FOUND = "I couldn't find this in the documents."
CLOSEST = "I'm not sure the documents answer this. The closest passage I found:"
# Without the verifier (setting `verifier=off`): the threshold the hand-fitted confidence below
# was calibrated with.
LEGACY_THRESHOLD = 0.21
# Sentences the verifier reads per question: the cheap scorers' best few (the right one is
# among them for nearly every answerable question, and each costs ~2-4 ms on one core).
VERIFY_TOP = 6
MIN_VERIFY_WORDS = 4
# From this verifier probability on, the answer-type rule ("a 'who' question whose quote names
# nobody") no longer refuses: chosen on the fit sets by bench/answer_quality.py --fit.
VERIFIED = 0.5

# Sentence score = weighted sum of the cues (set by hand while probing the demo set; not fitted).
W_SIM, W_LEX, W_CUE, W_PASSAGE, W_DATE = 1.0, 0.8, 0.25, 0.5, 0.5
# Logistic confidence over FEATURES, fitted by bench/answer_quality.py --fit on hybrid
# retrieval (SQuAD fit articles + the even-hash half of CLAPnq dev A; the demo set is held out).
# Features whose fitted weight took the wrong sign are dropped (weight 0): SQuAD's adversarial
# questions copy the paragraph's words, which makes "more words missing" look like "more
# confident". "negation_lost" is 0 because the rows it fires on are decided by the negation
# guard, which the fit leaves out. Tried and left out, for no held-out gain: the question's
# terms matched by meaning (word vectors, +~200 ms a question, no held-out gain), the retrieval
# margin between the top two passages (fitted weight 0), spaCy entity-type agreement.
FEATURES = (
    "bias", "top_score", "sentence_sim", "sentence_lex", "context_lex", "cue", "missing",
    "context_sim", "word_cover", "key_cover", "negation_lost", "margin", "best_passage", "opposite",
)  # fmt: skip
CONFIDENCE_WEIGHTS = (
    -3.712,
    0.0,
    2.311,
    0.439,
    0.0,
    0.0,
    0.0,
    1.196,
    0.107,
    0.389,
    0.0,
    0.988,
    0.124,
    -4.419,
)
_CACHE_SIZE = 50_000
_DOCUMENTS_CACHED = 64


class ExtractiveAnswerer:
    """Quotes the sentences that best answer the question, or abstains."""

    name = NAME
    description = DESCRIPTION
    # Same question and passages, same answer: the pipeline may reuse it (a repeat is ~free).
    deterministic = True

    def __init__(
        self,
        embedder: Embedder,
        *,
        abstain_threshold: float | None = None,
        answer_threshold: float | None = None,
        documents: Callable[[str], Document] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.embedder = embedder
        self.verifier = verifier
        combiner = verifier.combiner if verifier is not None else None
        if abstain_threshold is None:
            abstain_threshold = (
                combiner.abstain_threshold if combiner is not None else LEGACY_THRESHOLD
            )
        if answer_threshold is None:
            answer_threshold = combiner.answer_threshold if combiner is not None else 0.0
        self.abstain_threshold = abstain_threshold
        # Between the two thresholds the best passage is offered as the closest, not as the
        # answer; a user's abstain threshold above the fitted answer threshold closes the band.
        self.answer_threshold = max(answer_threshold, abstain_threshold)
        self.documents = documents
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._docs: OrderedDict[str, Document | None] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, resources: Resources) -> ExtractiveAnswerer:
        verifier = None
        if settings.verifier == "builtin" and verifier_version() is None:
            # Only a damaged install lacks the package's model (tests/test_verifier.py checks).
            log.warning("The built-in answer verifier is missing; answering without it")
        elif settings.verifier != "off":
            from qa.answering.verifier import load_verifier

            folder = None if settings.verifier == "builtin" else settings.verifier
            verifier = load_verifier(folder)
        return cls(
            resources.embedder,
            abstain_threshold=settings.abstain_threshold,
            answer_threshold=settings.answer_threshold,
            documents=resources.documents,
            verifier=verifier,
        )

    @property
    def version(self) -> str:
        """What decides this answerer's answers beyond its inputs (cached answers are kept
        per version: a changed verifier never reuses the old one's)."""
        v = self.verifier.version if self.verifier is not None else "no-verifier"
        return f"{v};t={self.abstain_threshold:.4f}/{self.answer_threshold:.4f}"

    def carry_over(self, previous: object) -> None:
        """Start with the sentence vectors of the answerer this one replaces (a server's swap
        to a changed index): they depend on the text only, and re-embedding them would slow the
        first questions after a swap (bench/live.py measures questions during a swap)."""
        if isinstance(previous, ExtractiveAnswerer) and previous.embedder is self.embedder:
            with previous._lock:
                vectors = OrderedDict(previous._vectors)
            with self._lock:
                self._vectors = vectors

    def warm_texts(self, chunks: Iterable[Chunk], *, limit: int) -> list[str]:
        """The sentences of `chunks` with no vector yet, in order and once each, as many as
        fit with the ones cached under `limit` (at most the cache's size).

        A question's first answer from a passage embeds the passage's sentences: nearly all of
        the answer's time when questions keep meeting new passages. `qa serve` embeds these
        ahead (qa/server/warmup.py) and hands them over with `remember`.
        """
        with self._lock:
            room = min(limit, _CACHE_SIZE) - len(self._vectors)
        out: dict[str, None] = {}  # insertion-ordered, no repeats
        for chunk in chunks:
            if len(out) >= room:
                break
            passage = Passage(chunk=chunk, score=0.0, rank=1)
            texts = [span.text for _, span in sentences_of([passage], self._document_text)]
            with self._lock:
                out.update((t, None) for t in texts if t not in self._vectors)
        return list(out)[: max(room, 0)]

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Keep sentence vectors made elsewhere (row i is texts[i]'s)."""
        with self._lock:
            for text, vec in zip(texts, vectors, strict=True):
                self._vectors[text] = vec
            while len(self._vectors) > _CACHE_SIZE:
                self._vectors.popitem(last=False)

    # -- the answer ------------------------------------------------------------------------

    def answer(
        self, question: str, passages: Sequence[Passage], *, history: Sequence[Turn] = ()
    ) -> Answer:
        """Quote the best sentence(s) with `[n]` markers, or abstain when confidence is low."""
        passages = tuple(passages)
        if not passages:
            return self._abstain(question, passages, "No passage was retrieved for the question.")
        if not sentences_of(passages, self._document_text):
            return self._abstain(question, passages, "The retrieved passages hold no text.")
        return self.respond(question, passages, self.analyse(question, passages))

    def respond(self, question: str, passages: Sequence[Passage], analysis: Analysis) -> Answer:
        """The Answer for an analysis: the quoted sentences, or an abstention."""
        passages = tuple(passages)
        if analysis.guard is not None or analysis.confidence < self.abstain_threshold:
            return self._abstain(
                question, passages, analysis.reason(self.abstain_threshold), analysis.confidence
            )
        closest = analysis.confidence < self.answer_threshold
        chosen = analysis.chosen[:1] if closest else analysis.chosen
        citations = tuple(
            quote_citation(
                s.passage, s.span, document=self._document(s.passage.chunk), supported=True
            )
            for s in chosen
        )
        text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
        if closest:
            text = f"{CLOSEST} {text}"
        return Answer(
            question=question,
            answer=text,
            answerer=self.name,
            short_answer=None if closest else analysis.short_answer(question),
            citations=citations,
            passages=passages,
            kind="closest" if closest else "answered",
            confidence=analysis.confidence,
        )

    def _abstain(
        self,
        question: str,
        passages: tuple[Passage, ...],
        reason: str,
        confidence: float | None = None,
    ) -> Answer:
        return Answer(
            question=question,
            answer=NOT_FOUND,
            answerer=self.name,
            abstained=True,
            abstain_reason=reason,
            passages=passages,
            confidence=confidence,
        )

    # -- scoring ---------------------------------------------------------------------------

    def analyse(self, question: str, passages: Sequence[Passage]) -> Analysis:
        """Score every sentence of the passages and compute the answer confidence."""
        kind = question_type(question)
        sentences = sentences_of(passages, self._document_text)
        q_terms = list(dict.fromkeys(content_terms(question)))
        sent_terms = [set(content_terms(s.text)) for _, s in sentences]
        idf = idf_of(q_terms, sent_terms)
        q_vec = self._query_vector(question)
        vectors = self._vectors_for([s.text for _, s in sentences])
        sims = vectors @ q_vec
        # A paraphrase often spreads its words over a sentence and its neighbours: the mean
        # vector of that window (no extra embedding) catches what the sentence alone misses.
        window_sims = window_vectors(vectors, sentences) @ q_vec
        top_score = max(p.score for p in passages)
        scored = []
        clashing: list[tuple[float, str]] = []
        for (passage, span), terms, sim in zip(sentences, sent_terms, sims, strict=True):
            lex = coverage(q_terms, idf, terms)
            cue = _cue(question, span.text, kind)
            score = W_SIM * sim + W_LEX * lex + W_CUE * cue + W_PASSAGE * passage.score
            if date_clash(question, span.text, terms):
                score -= W_DATE  # "in January 2018" asks for another sentence than September's
                clashing.append((score + W_DATE, span.text))
            scored.append(Scored(passage, span, float(sim), lex, cue, score))
        window = {
            (p.chunk.doc_id, span.start): float(w)
            for (p, span), w in zip(sentences, window_sims, strict=True)
        }
        scored.sort(key=lambda s: -s.score)
        verdicts = self._verify(question, scored)
        # The verifier reads the question against each of the cheap scorers' best sentences
        # and picks the one that answers it ("issued" is not "signed"); without it, the top.
        best = max(verdicts, key=lambda s: verdicts[s].probability) if verdicts else scored[0]
        chosen = [best, *second_sentence(best, scored, q_terms, idf)]
        context = set().union(*(context_terms(s, sentences, sent_terms) for s in chosen))
        # How far the best sentence leads the best one of another passage (a clear winner).
        others = (s.score for s in scored[1:] if s.passage is not best.passage)
        runner_up = next(others, best.score - 1.0)
        quoted = " ".join(s.span.text for s in chosen)
        all_terms = set().union(*sent_terms)
        missing = [t for t in q_terms if t not in all_terms]
        surface = {stem(w): w for w in reversed(WORDS.findall(question))}
        features = {
            "bias": 1.0,
            "top_score": top_score,
            "sentence_sim": best.sim,
            "sentence_lex": coverage(
                q_terms, idf, set().union(*(sent_terms_of(s) for s in chosen))
            ),
            "context_lex": coverage(q_terms, idf, context),
            "cue": max(s.cue for s in chosen),
            "missing": sum(idf[t] for t in missing) / max(sum(idf.values()), 1e-9),
            "context_sim": max(best.sim, window[(best.passage.chunk.doc_id, best.doc_start)]),
            "word_cover": word_cover(question, quoted),
            "key_cover": key_cover(question, context),
            "negation_lost": negation_lost(question, quoted),
            "margin": float(best.score - runner_up),
            "best_passage": float(best.passage.score),
            "opposite": float(opposite_word(question, quoted) is not None),
        }
        # A "when"/"how many"/"who" question whose quote holds no such span.
        features["no_typed_span"] = float(kind in TYPED_KINDS and features["cue"] == 0.0)
        verdict = verdicts.get(best)
        combiner = self.verifier.combiner if self.verifier is not None else None
        if verdict is not None:
            features["verifier"] = _logit(verdict.probability)
            ranked = sorted((v.probability for v in verdicts.values()), reverse=True)
            features["verifier_second"] = _logit(ranked[1]) if len(ranked) > 1 else -8.0
        if combiner is not None and verdict is not None:
            confidence = combiner.probability(features)
        else:
            z = sum(w * features[f] for f, w in zip(FEATURES, CONFIDENCE_WEIGHTS, strict=True))
            confidence = 1.0 / (1.0 + math.exp(-z))
        missing_words = tuple(surface.get(t, t) for t in missing)
        skip = [] if combiner is None else [g for g in GUARDS if g not in combiner.guards]
        if verdict is not None and verdict.probability >= VERIFIED:
            # The verifier reads the sentence as the answer: it tells a founder's name that
            # the rules' name finder misses ("Its founder was the chemist Ada Lin").
            skip.append("answer_type")
        guard = guard_reason(
            question, kind, quoted, context, all_terms, features, best.score, clashing, skip=skip
        )
        return Analysis(
            kind,
            tuple(chosen),
            tuple(scored),
            features,
            confidence,
            missing_words,
            guard,
            verdict,
        )

    def _verify(self, question: str, scored: Sequence[Scored]) -> dict[Scored, Verdict]:
        """The verifier's verdicts on the best few sentences (none without a verifier)."""
        if self.verifier is None:
            return {}
        # A heading ("Harbor Street Laboratory") shares the question's words and answers
        # nothing; the verifier never saw one in training.
        top = [s for s in scored if len(s.span.text.split()) >= MIN_VERIFY_WORDS][:VERIFY_TOP]
        return dict(
            zip(top, self.verifier.verify(question, [s.span.text for s in top]), strict=True)
        )

    def _document(self, chunk: Chunk) -> Document | None:
        """The chunk's source document (a few cached), or None when it cannot be looked up."""
        if self.documents is None:
            return None
        with self._lock:
            if chunk.doc_id in self._docs:
                self._docs.move_to_end(chunk.doc_id)
                return self._docs[chunk.doc_id]
        try:
            doc: Document | None = self.documents(chunk.doc_id)
        except QAError:
            doc = None  # a passage from elsewhere: quote the chunk alone
        with self._lock:
            self._docs[chunk.doc_id] = doc
            while len(self._docs) > _DOCUMENTS_CACHED:
                self._docs.popitem(last=False)
        return doc

    def _document_text(self, chunk: Chunk) -> str | None:
        doc = self._document(chunk)
        return doc.text if doc is not None else None

    def _query_vector(self, question: str) -> np.ndarray:
        """The question's vector (the embedder caches it: the retriever just embedded it)."""
        return self.embedder.embed_query(question)

    def _vectors_for(self, texts: list[str]) -> np.ndarray:
        """Sentence vectors, embedding only the texts not cached yet (in one batch)."""
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if todo:
            self.remember(todo, self.embedder.embed_documents(todo))
        with self._lock:
            rows = []
            for t in texts:
                vec = self._vectors.get(t)
                if vec is None:  # evicted by a concurrent call: embed it alone
                    vec = self.embedder.embed_documents([t])[0]
                else:
                    self._vectors.move_to_end(t)
                rows.append(vec)
        return np.stack(rows) if rows else np.zeros((0, 1), dtype=np.float32)


@dataclass(frozen=True)
class Analysis:
    """Everything the answerer decided for one question (the calibration script reads it)."""

    kind: str | None
    chosen: tuple[Scored, ...]
    ranked: tuple[Scored, ...]
    features: dict[str, float]
    confidence: float
    missing: tuple[str, ...]  # question words (as typed) that no retrieved sentence holds
    guard: Guard | None = None  # a rule that forces abstention, whatever the confidence
    verdict: Verdict | None = None  # the verifier's reading of the best sentence

    def short_answer(self, question: str) -> str | None:
        """The short answer: the verifier's span in the best sentence, else the first span of
        the asked-for kind that the rules find in the quoted sentences."""
        if self.verdict is not None and self.verdict.span_text:
            return self.verdict.span_text
        for s in self.chosen:
            found = short_answer(question, s.span.text, self.kind)
            if found is not None:
                return found.text
        return None

    def reason(self, threshold: float) -> str:
        """Why the answerer abstains, in words a user understands."""
        if self.guard is not None:
            return f"{self.guard.message[:-1]} (confidence {self.confidence:.2f})."
        reason = (
            f"The best passages match the question weakly (confidence {self.confidence:.2f} "
            f"< threshold {threshold:.2f})"
        )
        if self.missing:
            words = ", ".join(repr(t) for t in self.missing[:3])
            return f"{reason}; they lack the question's words {words}."
        return f"{reason}."


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _cue(question: str, sentence: str, kind: str | None) -> float:
    """1.0 when the sentence holds a span of the asked-for kind that the question lacks."""
    if kind is None:
        return 0.5
    return 1.0 if has_short_answer(question, sentence, kind) else 0.0


def register(registry: Registry) -> None:
    """Plugin hook: register the built-in extractive answerer."""
    registry.register(NAME, ExtractiveAnswerer.from_settings, DESCRIPTION)
