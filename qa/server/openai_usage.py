"""The `usage` object of the OpenAI-compatible routes: tokens read and written for one request.

Clients read `completion.usage` (cost meters, context trackers; simonw's `llm` fails without
it), so every completion carries one. When the answer came from an LLM server that reported its
own counts for every call (`qa.answering.llm.metered`), those are the numbers. Otherwise they
are counted with the tiktoken encoding the index is chunked with (setting `encoding`):
`prompt_tokens` are the request's messages plus the passages the answerer read,
`completion_tokens` the answer text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qa.answering.llm import TokenUsage
from qa.ingest.tokens import count_tokens, get_encoding
from qa.types import Answer

if TYPE_CHECKING:
    import tiktoken


@dataclass(frozen=True)
class UsageCounter:
    """Counts one request's usage; made per request once the encoding is loaded."""

    encoding: tiktoken.Encoding
    message_tokens: int  # every message of the request, system messages included
    meter: TokenUsage  # what an LLM server reported while answering this request

    @classmethod
    def load(cls, encoding: str, messages: Sequence[str], meter: TokenUsage) -> UsageCounter:
        """Loads the encoding (cached after the first call: run it off the event loop)."""
        loaded = get_encoding(encoding)
        return cls(loaded, sum(count_tokens(m, loaded) for m in messages), meter)

    def usage(self, answer: Answer) -> dict[str, int]:
        """OpenAI's `usage`: prompt_tokens, completion_tokens, total_tokens."""
        if self.meter.complete:
            prompt, completion = self.meter.prompt_tokens, self.meter.completion_tokens
        else:
            read = sum(p.chunk.n_tokens for p in answer.passages)
            prompt = self.message_tokens + read
            completion = count_tokens(answer.answer, self.encoding)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
