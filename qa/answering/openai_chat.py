"""The `openai-chat` answerer: any OpenAI-compatible chat server writes the answer, we check it.

The model sees the top passages (packed to `context_tokens`) numbered `[n]` and must cite them.
Its reply is then verified, not trusted: every `[n]` marker is parsed back to a passage
(out-of-range ones are logged and dropped), each cited sentence is located in that passage
(`grounding`), and the Citation carries the source-document offsets of the best supporting
span plus `supported`. An answer with no supported citation keeps its text but says so in
`abstain_reason`; the model's "I couldn't find this in the documents." becomes `abstained`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from qa.errors import BackendError
from qa.types import Answer, Document, Passage, Turn

if TYPE_CHECKING:
    from qa.answering.llm import ChatClient
    from qa.answering.registry import Registry, Resources
    from qa.config import Settings
    from qa.embedding.models import Embedder

log = logging.getLogger(__name__)

NAME = "openai-chat"
DESCRIPTION = (
    "Any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp) via QA_LLM_BASE_URL"
)

# Variants of the abstain phrase small and large models actually produce.
_ABSTAIN_RE = re.compile(
    r"\b(?:i\s+)?(?:could\s*n[o']?t|can\s*n[o']?t|cannot|can't|was\s+unable\s+to|am\s+unable\s+to|"
    r"unable\s+to|did\s*n[o']?t|do\s*n[o']?t)\s+(?:find|locate|see)\b"
    r"|\b(?:not|no\s+information\s+is)\s+(?:found|mentioned|contained|given|provided|stated)?\s*"
    r"in\s+the\s+(?:provided\s+|given\s+)?(?:documents?|passages?|context|sources?)\b"
    r"|\b(?:documents?|passages?|context)\s+(?:does|do)\s*(?:n[o']?t|not)\s+"
    r"(?:contain|mention|say|include|provide)\b",
    re.IGNORECASE,
)
_REWRITE_PREFIX = re.compile(r"^\s*(?:standalone|rewritten)?\s*question\s*:\s*", re.IGNORECASE)


def is_abstention(text: str) -> bool:
    """Whether the reply's first sentence says the passages do not hold the answer."""
    first = re.split(r"(?<=[.!?])\s", text.strip().replace("’", "'"), maxsplit=1)[0]
    return bool(_ABSTAIN_RE.search(first))


class OpenAIChatAnswerer:
    """Answers with an LLM behind an OpenAI-compatible `/v1/chat/completions` endpoint."""

    name = NAME
    description = DESCRIPTION
    # The pipeline hands over as many ranked passages as fit `context_tokens` (per request).
    packs_context = True
    # It mostly waits for the LLM server: the HTTP server runs its answer step off the
    # one-per-core workers, so a slow LLM never holds a core's worker (qa.server.admission).
    cpu_bound = False

    def __init__(
        self,
        client: ChatClient,
        *,
        context_tokens: int = 1500,
        encoding: str = "cl100k_base",
        embedder: Embedder | None = None,
        documents: Callable[[str], Document] | None = None,
    ) -> None:
        self.client = client
        self.context_tokens = context_tokens
        self.encoding_name = encoding
        self.embedder = embedder
        self.documents = documents  # the page of each quote (see qa.answering.grounding.ground)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        embedder: Embedder | None = None,
        documents: Callable[[str], Document] | None = None,
    ) -> OpenAIChatAnswerer:
        from qa.answering.llm import ChatClient

        return cls(
            ChatClient.from_settings(settings),
            context_tokens=settings.context_tokens,
            encoding=settings.encoding,
            embedder=embedder,
            documents=documents,
        )

    def messages(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Sequence[Turn] = (),
        *,
        context_tokens: int | None = None,
    ) -> tuple[list[dict[str, str]], tuple[Passage, ...]]:
        """The chat messages for a question, and the passages they show (packed to budget)."""
        from qa.answering.prompts import pack_passages, render_messages
        from qa.ingest.tokens import get_encoding

        budget = context_tokens or self.context_tokens
        encoding = get_encoding(self.encoding_name)
        shown = pack_passages(question, passages, history, context_tokens=budget, encoding=encoding)
        msgs = render_messages(question, shown, history, context_tokens=budget, encoding=encoding)
        return msgs, shown

    def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        context_tokens: int | None = None,
    ) -> Answer:
        """Ask the LLM over the passages and return its verified, cited answer."""
        if not passages:
            return self._no_passages(question)
        msgs, shown = self.messages(question, passages, history, context_tokens=context_tokens)
        reply = self.client.complete(msgs)
        return self.finish(question, reply, shown)

    def stream(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        context_tokens: int | None = None,
    ) -> Iterator[str | Answer]:
        """Text deltas as the LLM writes them, then the verified Answer."""
        if not passages:
            answer = self._no_passages(question)
            yield answer.answer
            yield answer
            return
        msgs, shown = self.messages(question, passages, history, context_tokens=context_tokens)
        parts: list[str] = []
        for delta in self.client.stream(msgs):
            parts.append(delta)
            yield delta
        yield self.finish(question, "".join(parts), shown)

    def rewrite_question(self, question: str, history: Sequence[Turn]) -> str:
        """`question` rewritten to stand alone given the conversation; itself on any failure."""
        from qa.answering.prompts import render_rewrite_messages

        if not history:
            return question
        try:
            reply = self.client.complete(render_rewrite_messages(question, history), max_tokens=96)
        except BackendError as exc:
            log.warning("Follow-up rewrite failed, asking the question as is: %s", exc)
            return question
        rewritten = _clean_rewrite(reply)
        # A rewrite that is much longer, or no longer a question, is the model answering.
        if (
            not rewritten
            or len(rewritten) > max(300, 4 * len(question))
            or (question.rstrip().endswith("?") and not rewritten.endswith("?"))
        ):
            log.info("Ignoring unusable rewrite %r of %r", rewritten[:80], question)
            return question
        return rewritten

    def finish(self, question: str, reply: str, shown: Sequence[Passage]) -> Answer:
        """Turn the model's raw reply into an Answer with verified citations."""
        from qa.answering.grounding import ground

        text = reply.strip()
        if not text:
            return Answer(
                question=question,
                answer="",
                answerer=NAME,
                abstained=True,
                abstain_reason="The LLM returned an empty answer.",
                passages=tuple(shown),
            )
        if is_abstention(text):
            return Answer(
                question=question,
                answer=text,
                answerer=NAME,
                abstained=True,
                abstain_reason="The LLM found no answer in the retrieved passages.",
                passages=tuple(shown),
            )
        grounded = ground(text, shown, embedder=self.embedder, documents=self.documents)
        return Answer(
            question=question,
            answer=grounded.text,
            answerer=NAME,
            abstain_reason=grounded.warning,
            citations=grounded.citations,
            passages=tuple(shown),
        )

    def _no_passages(self, question: str) -> Answer:
        from qa.answering.prompts import ABSTAIN_PHRASE

        return Answer(
            question=question,
            answer=ABSTAIN_PHRASE,
            answerer=NAME,
            abstained=True,
            abstain_reason="No passages were retrieved, so the LLM was not asked.",
        )


def _clean_rewrite(reply: str) -> str:
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    text = _REWRITE_PREFIX.sub("", lines[0])
    text = re.sub(r"\[\d{1,3}\]", "", text).strip()
    return text.strip("\"'“”` ").strip()


def create(settings: Settings, resources: Resources) -> OpenAIChatAnswerer:
    """Registry factory: the answerer configured by the `llm_*` settings."""
    return OpenAIChatAnswerer.from_settings(
        settings, getattr(resources, "embedder", None), getattr(resources, "documents", None)
    )


def register(registry: Registry) -> None:
    """Entry point (group `qa.answerers`): add `openai-chat` to the registry."""
    registry.register(NAME, create, DESCRIPTION)
