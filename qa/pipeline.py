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
from qa.types import Answer, Document, Passage, Turn

if TYPE_CHECKING:
    from qa.answerers import Answerer
    from qa.embedding import Embedder
    from qa.retrieval import Retriever
    from qa.store import FaissStore

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

    def __init__(self, settings: Settings, *, store: FaissStore, embedder: Embedder) -> None:
        from qa.retrieval import Retriever

        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.retriever: Retriever = Retriever(store, embedder)
        self._answerers: dict[str, Answerer] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, settings: Settings, *, build_if_missing: bool = False, progress: bool = False
    ) -> Pipeline:
        """Open the index in settings.index_dir (building it from the corpus if asked)."""
        from qa.embedding import get_embedder
        from qa.errors import IndexNotFoundError
        from qa.store import FaissStore

        embedder = get_embedder(
            settings.embedding_model,
            device=settings.device,
            batch_size=settings.embedding_batch_size,
        )
        try:
            store = FaissStore.load(settings.index_dir, settings)
        except IndexNotFoundError:
            if not build_if_missing:
                raise
            from qa.indexing import build_index

            log.info("No index at %s: building it from %s", settings.index_dir, settings.corpus_dir)
            report = build_index(settings, embedder=embedder, progress=progress)
            log.info("Index built: %s", report)
            store = FaissStore.load(settings.index_dir, settings)
        # Load the model now, not on the first question.
        embedder.embed_query("warm up")
        return cls(settings, store=store, embedder=embedder)

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
        from qa.answerers import Resources, create_answerer

        key = self.settings.answerer if name is None else name
        with self._lock:
            if key not in self._answerers:
                resources = Resources(embedder=self.embedder)
                self._answerers[key] = create_answerer(key, self.settings, resources)
            return self._answerers[key]

    def answerers(self) -> dict[str, str]:
        """Every registered answerer name with its one-line description."""
        from qa.answerers import available_answerers

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
        from qa.followup import rewrite_followup

        return rewrite_followup(question, history)

    def search(self, question: str, *, k: int | None = None) -> tuple[Passage, ...]:
        """The top-k passages for a question."""
        text = self.check_question(question)
        return self.retriever.retrieve(text, k or self.settings.top_k)

    def document(self, doc_id: str) -> Document:
        """A source document by id (DocumentNotFoundError when unknown)."""
        return self.store.document(doc_id)

    # -- asking ----------------------------------------------------------------------------

    def _prepare(
        self,
        question: str,
        history: Sequence[Turn],
        top_k: int | None,
        answerer_name: str | None,
    ) -> tuple[str, str, Answerer, tuple[Passage, ...], dict[str, float], float]:
        t0 = time.perf_counter()
        text = self.check_question(question)
        answerer = self.answerer(answerer_name)
        timings: dict[str, float] = {}
        standalone = self.standalone_question(text, history, answerer)
        t1 = time.perf_counter()
        if standalone != text:
            timings["rewrite"] = (t1 - t0) * 1000
        passages = self.retriever.retrieve(standalone, top_k or self.settings.top_k)
        timings["retrieve"] = (time.perf_counter() - t1) * 1000
        return text, standalone, answerer, passages, timings, t0

    @staticmethod
    def _finish(
        answer: Answer,
        *,
        question: str,
        standalone: str,
        passages: tuple[Passage, ...],
        timings: dict[str, float],
        t0: float,
        t_answer: float,
    ) -> Answer:
        now = time.perf_counter()
        timings["answer"] = (now - t_answer) * 1000
        timings["total"] = (now - t0) * 1000
        return dataclasses.replace(
            answer,
            question=question,
            standalone_question=standalone,
            passages=answer.passages or passages,
            timings_ms=tuple(timings.items()),
        )

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        top_k: int | None = None,
        answerer: str | None = None,
    ) -> Answer:
        """Answer a question (a follow-up when history is given) with cited passages."""
        text, standalone, impl, passages, timings, t0 = self._prepare(
            question, history, top_k, answerer
        )
        t_answer = time.perf_counter()
        result = impl.answer(standalone, passages, history=tuple(history))
        return self._finish(
            result,
            question=text,
            standalone=standalone,
            passages=passages,
            timings=timings,
            t0=t0,
            t_answer=t_answer,
        )

    def ask_stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        top_k: int | None = None,
        answerer: str | None = None,
    ) -> Iterator[StreamEvent]:
        """Like `ask`, as events: the passages, then text deltas, then the final Answer."""
        text, standalone, impl, passages, timings, t0 = self._prepare(
            question, history, top_k, answerer
        )
        yield StreamEvent("passages", passages)
        t_answer = time.perf_counter()
        stream = getattr(impl, "stream", None)
        final: Answer | None = None
        if stream is not None:
            for item in stream(standalone, passages, history=tuple(history)):
                if isinstance(item, Answer):
                    final = item
                else:
                    yield StreamEvent("delta", item)
        else:
            final = impl.answer(standalone, passages, history=tuple(history))
            # An answerer that cannot stream still shows its answer a sentence at a time.
            for piece in _PIECES.findall(final.answer):
                yield StreamEvent("delta", piece)
        if final is None:
            raise RuntimeError(f"answerer {impl.name!r} streamed no final Answer")
        yield StreamEvent(
            "answer",
            self._finish(
                final,
                question=text,
                standalone=standalone,
                passages=passages,
                timings=timings,
                t0=t0,
                t_answer=t_answer,
            ),
        )
