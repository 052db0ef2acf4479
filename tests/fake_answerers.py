"""A test-only answerer that gives each kind of Answer on demand, registered as plugins are.

It lets the wire, page and CLI tests show "answered", "closest" and "abstained" answers without
depending on where a real answerer draws its lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from qa.answering.registry import Resources, register_answerer, unregister_answerer
from qa.config import Settings
from qa.types import Answer, Citation, Passage, Turn

KINDS_ANSWERER = "kinds-test"
CLOSEST_TEXT = "The closest passage I found, which may not answer this:"
CLOSEST_CONFIDENCE = 0.42
ANSWERED_CONFIDENCE = 0.87


class KindsAnswerer:
    """Fake: "closest" when the question says closest, abstains on "unknown", else answers;
    both answers quote the start of the first passage at its exact document offsets."""

    name = KINDS_ANSWERER
    description = "Test answerer: answered, closest or abstained on demand."

    def answer(
        self, question: str, passages: Sequence[Passage], *, history: Sequence[Turn] = ()
    ) -> Answer:
        if "unknown" in question or not passages:
            return Answer(
                question=question,
                answer="The documents do not say.",
                abstained=True,
                abstain_reason="No passage mentions it.",
                passages=tuple(passages),
                answerer=self.name,
            )
        first = passages[0].chunk
        quote = first.text[:60]
        citation = Citation(
            n=passages[0].rank,
            chunk_id=first.id,
            doc_id=first.doc_id,
            title=first.title,
            quote=quote,
            start=first.start,
            end=first.start + len(quote),
            page=first.page,
            supported=True,
        )
        closest = "closest" in question
        text = f"{CLOSEST_TEXT} {quote} [1]" if closest else f"{quote} [1]"
        return Answer(
            question=question,
            answer=text,
            citations=(citation,),
            passages=tuple(passages),
            answerer=self.name,
            kind="closest" if closest else "answered",
            confidence=CLOSEST_CONFIDENCE if closest else ANSWERED_CONFIDENCE,
        )


def _factory(settings: Settings, resources: Resources) -> KindsAnswerer:
    return KindsAnswerer()


@contextmanager
def kinds_answerer_registered() -> Iterator[str]:
    """Register the fake in the process-wide registry for the block, then remove it."""
    register_answerer(KINDS_ANSWERER, _factory, KindsAnswerer.description)
    try:
        yield KINDS_ANSWERER
    finally:
        unregister_answerer(KINDS_ANSWERER)
