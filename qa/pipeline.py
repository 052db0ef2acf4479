"""The one place that wires the stages: question (+ history) -> retrieval -> answerer -> Answer.

`Pipeline.load(settings)` opens the index and the embedding model once; the CLI, the HTTP API
and the evaluator all ask through it, so they answer the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from qa.config import Settings
from qa.errors import InvalidQuestionError
from qa.recent import Recent
from qa.types import Answer, Candidate, Document, Passage, Turn

if TYPE_CHECKING:
    from qa.answering.registry import Answerer
    from qa.embedding.models import Embedder
    from qa.retrieval.rerank import Reranker
    from qa.retrieval.retriever import Retrieval, Retriever
    from qa.stores.base import Store

log = logging.getLogger(__name__)

# Split an answer into sentence-sized pieces that concatenate back to the exact text.
_PIECES = re.compile(r".+?(?:[.!?;](?=\s)|$)\s*", re.S)


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent step of an answer: the passages, a text delta, or the final Answer."""

    kind: Literal["passages", "delta", "answer"]
    data: Any


class Pipeline:
    """Retrieval and answering over one index, with models loaded once and shared."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        embedder: Embedder,
        backend_reason: str | None = None,
        opened_with: Settings | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        from qa.retrieval.retriever import Retriever

        self.settings = settings
        # The settings before the index's calibration was applied: what `reopen` starts from.
        self.opened_with = opened_with or settings
        self.store = store
        self.embedder = embedder
        # Why the embedder runs on its backend (`auto`'s choice, or the setting), for /readyz.
        self.backend_reason = backend_reason or (
            f"set by embedding_backend={settings.embedding_backend}"
        )
        if reranker is None and settings.reranker:
            from qa.retrieval.rerank import get_reranker

            reranker = get_reranker(settings.reranker, settings.device)
        self.retriever: Retriever = Retriever(store, embedder, settings, reranker=reranker)
        self._answerers: dict[str, Answerer] = {}
        self._lock = threading.Lock()
        # A question asked again (a chat page's retry, a FAQ, a client's repeat) reuses its
        # retrieval, and its answer where the answerer says it would give the same one again.
        # Per Pipeline, so a server's swap to a changed index (`reopen`) starts both afresh.
        self._retrievals: Recent[tuple[str, int], Retrieval] = Recent(_RECENT)
        self._answers: Recent[tuple[Any, ...], Answer] = Recent(_RECENT)

    @classmethod
    def load(
        cls, settings: Settings, *, build_if_missing: bool = False, progress: bool = False
    ) -> Pipeline:
        """Open the index in settings.index_dir (building it from the corpus if asked)."""
        from qa.embedding.models import embedder_for, resolve_backend
        from qa.errors import IndexNotFoundError
        from qa.stores import open_store

        settings, backend_reason = resolve_backend(settings)
        embedder = embedder_for(settings)
        try:
            store = open_store(settings)
        except IndexNotFoundError:
            if not build_if_missing:
                raise
            from qa.ingest.build import build_index

            log.info("No index at %s: building it from %s", settings.index_dir, settings.corpus_dir)
            report = build_index(settings, embedder=embedder, progress=progress)
            log.info("Index built: %s", report)
            store = open_store(settings)
        # Load the model's weights now, not on the first question (`dim` reads them); running
        # it once more ("warm up") would cost start-up what the first question pays anyway.
        embedder.dim  # noqa: B018
        from qa.stores.calibration import apply_calibration

        return cls(
            apply_calibration(settings),
            store=store,
            embedder=embedder,
            backend_reason=backend_reason,
            opened_with=settings,
        )

    def reopen(self) -> Pipeline:
        """A Pipeline over the index as it is now, sharing this one's models.

        For a server that swaps to a rebuilt index: only the store is opened again (plus its
        calibration); the embedding model and the reranker are reused, not loaded twice.
        """
        from qa.stores import open_store
        from qa.stores.calibration import apply_calibration

        fresh = Pipeline(
            apply_calibration(self.opened_with),
            store=open_store(self.opened_with),
            embedder=self.embedder,
            backend_reason=self.backend_reason,
            opened_with=self.opened_with,
            reranker=self.retriever.reranker,
        )
        with self._lock:
            previous = dict(self._answerers)
        for name, old in previous.items():
            # An answerer bound to the old store is made again; one that keeps work that does
            # not depend on the index (the extractive one's sentence vectors) hands it over.
            carry_over = getattr(fresh.answerer(name), "carry_over", None)
            if carry_over is not None:
                carry_over(old)
        return fresh

    # -- building blocks -------------------------------------------------------------------

    def check_question(self, question: str) -> str:
        """The question stripped, or InvalidQuestionError when empty or over the limit."""
        text = question.strip()
        if not text:
            raise InvalidQuestionError("The question is empty. Type a question to ask.")
        limit = self.settings.max_question_chars
        if len(text) > limit:
            raise InvalidQuestionError(
                f"The question is {len(text)} characters long; the limit is {limit} "
                "(setting max_question_chars). Shorten it."
            )
        return text

    def answerer(self, name: str | None = None) -> Answerer:
        """The answerer registered under `name` (default: the setting), created once."""
        from qa.answering.registry import Resources, create_answerer

        key = self.settings.answerer if name is None else name
        with self._lock:
            if key not in self._answerers:
                resources = Resources(embedder=self.embedder, documents=self.store.document)
                self._answerers[key] = create_answerer(key, self.settings, resources)
            return self._answerers[key]

    def verifier_version(self) -> str | None:
        """The default answerer's trained verifier version (None when it has none)."""
        verifier = getattr(self.answerer(), "verifier", None)
        return getattr(verifier, "version", None)

    def answerers(self) -> dict[str, str]:
        """Every registered answerer name with its one-line description."""
        from qa.answering.registry import available_answerers

        return available_answerers()

    def standalone_question(
        self, question: str, history: Sequence[Turn], answerer: Answerer
    ) -> str:
        """The question rewritten to stand alone, using the conversation when there is one."""
        if not any(t.role == "user" for t in history):
            return question
        rewrite = getattr(answerer, "rewrite_question", None)
        if rewrite is not None:
            return str(rewrite(question, history))
        from qa.answering.followup import rewrite_followup

        return rewrite_followup(question, history)

    def search(self, question: str, *, k: int | None = None) -> tuple[Passage, ...]:
        """The top-k passages for a question."""
        return self.explain(question, k=k).passages

    def explain(self, question: str, *, k: int | None = None) -> Retrieval:
        """The top-k passages plus every candidate with its per-stage scores (`--explain`)."""
        text = self.check_question(question)
        return self.retriever.explain(text, k or self.settings.top_k)

    def document(self, doc_id: str) -> Document:
        """A source document by id (DocumentNotFoundError when unknown)."""
        return self.store.document(doc_id)

    # -- asking ----------------------------------------------------------------------------

    def _prepare(self, question: str, history: Sequence[Turn], options: AskOptions) -> Prepared:
        t0 = time.perf_counter()
        text = self.check_question(question)
        answerer = self.answerer(options.answerer)
        timings: dict[str, float] = {}
        standalone = self.standalone_question(text, history, answerer)
        t1 = time.perf_counter()
        if standalone != text:
            timings["rewrite"] = (t1 - t0) * 1000
        k, budget = self._depth(answerer, options)
        retrieval = self._retrievals.get((standalone, k))
        if retrieval is None:
            retrieval = self._retrievals.put((standalone, k), self.retriever.explain(standalone, k))
        timings["retrieve"] = (time.perf_counter() - t1) * 1000
        return _prepared(text, standalone, answerer, retrieval, budget, options, timings, t0)

    def _depth(self, answerer: Answerer, options: AskOptions) -> tuple[int, int | None]:
        """How many passages to retrieve, and the token budget of an answerer that packs them
        (None for the others)."""
        k = options.top_k or self.settings.top_k
        if not getattr(answerer, "packs_context", False):
            return k, None
        budget = options.context_tokens or self.settings.context_tokens
        # Enough candidates to fill the budget; the pack keeps the rank-order prefix.
        return max(k, min(self.settings.candidates, budget // _MIN_CHUNK_TOKENS)), budget

    def recall(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        top_k: int | None = None,
        answerer: str | None = None,
        context_tokens: int | None = None,
        explain: bool = False,
    ) -> Answer | None:
        """The Answer `ask` would give, when it is at hand: the question was asked before (not
        in a conversation) and its retrieval and its deterministic answerer's Answer are kept.
        None otherwise (then `ask`). Only lookups, so a busy server gives a repeat at once
        instead of queueing it behind new questions for a worker."""
        if history:
            return None
        t0 = time.perf_counter()
        text = self.check_question(question)
        options = AskOptions(top_k, answerer, context_tokens, explain)
        with self._lock:  # an answerer not made yet has answered nothing
            impl = self._answerers.get(self.settings.answerer if answerer is None else answerer)
        if impl is None or not getattr(impl, "deterministic", False):
            return None
        k, budget = self._depth(impl, options)
        retrieval = self._retrievals.get((text, k))
        if retrieval is None:
            return None
        timings = {"retrieve": (time.perf_counter() - t0) * 1000}
        prepared = _prepared(text, text, impl, retrieval, budget, options, timings, t0)
        found = self._answers.get(_answer_key(prepared))
        return None if found is None else self._finish(found, prepared, time.perf_counter())

    def _answer(self, prepared: Prepared, history: Sequence[Turn]) -> Answer:
        """The answerer's Answer, or the one it gave before to the same question and passages
        when it is `deterministic` (an answer to a conversation is never reused)."""
        impl = prepared.answerer
        kwargs = self._answer_kwargs(prepared, history)
        if history or not getattr(impl, "deterministic", False):
            return impl.answer(prepared.standalone, prepared.passages, **kwargs)
        key = _answer_key(prepared)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers.put(
                key, impl.answer(prepared.standalone, prepared.passages, **kwargs)
            )
        return answer

    def _answer_kwargs(self, prepared: Prepared, history: Sequence[Turn]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"history": tuple(history)}
        if prepared.budget is not None:
            kwargs["context_tokens"] = prepared.budget
        return kwargs

    @staticmethod
    def _finish(answer: Answer, prepared: Prepared, t_answer: float) -> Answer:
        now = time.perf_counter()
        timings = prepared.timings
        timings["answer"] = (now - t_answer) * 1000
        timings["total"] = (now - prepared.t0) * 1000
        return dataclasses.replace(
            answer,
            question=prepared.text,
            standalone_question=prepared.standalone,
            passages=answer.passages or prepared.passages,
            timings_ms=tuple(timings.items()),
            candidates=prepared.candidates,
        )

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        top_k: int | None = None,
        answerer: str | None = None,
        context_tokens: int | None = None,
        explain: bool = False,
    ) -> Answer:
        """Answer a question (a follow-up when history is given) with cited passages.

        `context_tokens` overrides the budget of answerers that pack passages (openai-chat);
        `explain` attaches every retrieval candidate with its scores to the Answer.
        """
        options = AskOptions(top_k, answerer, context_tokens, explain)
        return self.complete(self._prepare(question, history, options), history)

    def prepare(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        top_k: int | None = None,
        answerer: str | None = None,
        context_tokens: int | None = None,
        explain: bool = False,
    ) -> Prepared:
        """The first half of `ask`: check the question, rewrite a follow-up, retrieve."""
        options = AskOptions(top_k, answerer, context_tokens, explain)
        return self._prepare(question, history, options)

    def complete(self, prepared: Prepared, history: Sequence[Turn] = ()) -> Answer:
        """The second half of `ask`: the answer step over the prepared passages."""
        t_answer = time.perf_counter()
        return self._finish(self._answer(prepared, history), prepared, t_answer)

    def ask_stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        top_k: int | None = None,
        answerer: str | None = None,
        context_tokens: int | None = None,
        explain: bool = False,
    ) -> Iterator[StreamEvent]:
        """Like `ask`, as events: the passages, then text deltas, then the final Answer."""
        options = AskOptions(top_k, answerer, context_tokens, explain)
        prepared = self._prepare(question, history, options)
        impl, passages = prepared.answerer, prepared.passages
        kwargs = self._answer_kwargs(prepared, history)
        yield StreamEvent("passages", passages)
        t_answer = time.perf_counter()
        stream = getattr(impl, "stream", None)
        final: Answer | None = None
        if stream is not None:
            for item in stream(prepared.standalone, passages, **kwargs):
                if isinstance(item, Answer):
                    final = item
                else:
                    yield StreamEvent("delta", item)
        else:
            final = self._answer(prepared, history)
            # An answerer that cannot stream still shows its answer a sentence at a time.
            for piece in _PIECES.findall(final.answer):
                yield StreamEvent("delta", piece)
        if final is None:
            raise RuntimeError(f"answerer {impl.name!r} streamed no final Answer")
        yield StreamEvent("answer", self._finish(final, prepared, t_answer))


# Questions whose retrieval and answer are kept (each retrieval holds its `candidates` chunks:
# ~50 KB at the defaults, so ~13 MB when full).
_RECENT = 256
# The smallest chunk worth a slot when deciding how many candidates could fill a budget.
_MIN_CHUNK_TOKENS = 32


@dataclass(frozen=True)
class AskOptions:
    """Per-request choices; None means the setting."""

    top_k: int | None = None
    answerer: str | None = None
    context_tokens: int | None = None
    explain: bool = False


@dataclass(frozen=True)
class Prepared:
    """A question checked and retrieved for, waiting for its answer step (`Pipeline.complete`)."""

    text: str
    standalone: str
    answerer: Answerer
    passages: tuple[Passage, ...]
    candidates: tuple[Candidate, ...]
    budget: int | None
    timings: dict[str, float]
    t0: float


def _prepared(
    text: str,
    standalone: str,
    answerer: Answerer,
    retrieval: Retrieval,
    budget: int | None,
    options: AskOptions,
    timings: dict[str, float],
    t0: float,
) -> Prepared:
    return Prepared(
        text=text,
        standalone=standalone,
        answerer=answerer,
        passages=retrieval.passages if budget is None else pack(retrieval.passages, budget),
        candidates=retrieval.candidates if options.explain else (),
        budget=budget,
        timings=timings,
        t0=t0,
    )


def _answer_key(prepared: Prepared) -> tuple[Any, ...]:
    """What a deterministic answerer's Answer depends on."""
    return (
        prepared.answerer.name,
        # A changed model or threshold (e.g. a new verifier) gives new answers.
        getattr(prepared.answerer, "version", None),
        prepared.standalone,
        prepared.budget,
        tuple((p.chunk.id, p.score) for p in prepared.passages),
    )


def pack(passages: Sequence[Passage], budget: int) -> tuple[Passage, ...]:
    """The longest rank-order prefix whose chunk tokens fit the budget (at least one passage)."""
    kept: list[Passage] = []
    used = 0
    for p in passages:
        if kept and used + p.chunk.n_tokens > budget:
            break
        kept.append(p)
        used += p.chunk.n_tokens
    return tuple(kept)
