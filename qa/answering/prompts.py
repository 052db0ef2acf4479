"""Render the chat prompts of the LLM answerer from the Jinja2 templates in `prompts/`.

Passages are data, never instructions: each one sits in a `<passage n=".." title="..">` block,
and any text inside a passage (or an earlier turn) that looks like one of our fence tags is
neutralised first, so a document cannot close its block and speak as the prompt. The system
message is the same for every question; nothing retrieved ever reaches it.

Passages are packed whole, in rank order, until the `context_tokens` budget (counted with
tiktoken, fences and the conversation included) is used up, rather than a fixed top-k.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qa.resources import resource_dir
from qa.types import Passage, Turn

if TYPE_CHECKING:
    import jinja2
    import tiktoken

PROMPTS_DIR = resource_dir("prompts")

# The exact words the system prompt asks for when the passages lack the answer.
ABSTAIN_PHRASE = "I couldn't find this in the documents."

# Only the last few turns matter for a follow-up; older ones would crowd out passages.
MAX_HISTORY_TURNS = 6
MAX_TURN_CHARS = 1000

_FENCE_TAGS = ("passages", "passage", "history", "turn")
# "<passage", "</ passage", "< /TURN" ...: an opening "<" that would start one of our tags.
_FENCE_RE = re.compile(rf"<(?=\s*/?\s*(?:{'|'.join(_FENCE_TAGS)})\b)", re.IGNORECASE)


def neutralise(text: str) -> str:
    """`text` with anything that could open or close a fence tag defused (`<` becomes `‹`)."""
    return _FENCE_RE.sub("‹", text)


def _attribute(text: str) -> str:
    """A value safe inside a double-quoted tag attribute on one line."""
    cleaned = neutralise(text).replace('"', "'").replace(">", "›")
    return " ".join(cleaned.split())


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    # autoescape off: this is a chat prompt, not HTML; fencing is done by `neutralise`.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
    )


def render(template: str, **values: Any) -> str:
    """Render `prompts/<template>` with `values`."""
    return _environment().get_template(template).render(**values).strip()


def _turns(history: Sequence[Turn]) -> list[dict[str, str]]:
    recent = list(history)[-MAX_HISTORY_TURNS:]
    return [
        {"role": t.role, "content": neutralise(t.content.strip()[:MAX_TURN_CHARS])} for t in recent
    ]


def _passage_block(p: Passage) -> dict[str, Any]:
    return {"n": p.rank, "title": _attribute(p.chunk.title), "text": neutralise(p.chunk.text)}


def _user_message(
    question: str, blocks: Sequence[dict[str, Any]], turns: Sequence[dict[str, str]]
) -> str:
    return render(
        "user.j2",
        question=neutralise(question.strip()),
        passages=blocks,
        history=turns,
        abstain_phrase=ABSTAIN_PHRASE,
    )


def pack_passages(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn] = (),
    *,
    context_tokens: int,
    encoding: tiktoken.Encoding,
) -> tuple[Passage, ...]:
    """The longest rank-order prefix of `passages` whose user message fits `context_tokens`.

    The whole rendered user message (fences, conversation and question included) is counted,
    so the budget is exact. The first passage is always kept, even when it alone is over
    budget: a prompt without passages can only abstain, and the server's own context limit is
    the hard bound.
    """
    turns = _turns(history)
    kept: list[Passage] = []
    blocks: list[dict[str, Any]] = []
    for p in sorted(passages, key=lambda p: p.rank):
        block = _passage_block(p)
        n_tokens = len(encoding.encode_ordinary(_user_message(question, [*blocks, block], turns)))
        if kept and n_tokens > context_tokens:
            break
        kept.append(p)
        blocks.append(block)
    return tuple(kept)


def render_messages(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn] = (),
    *,
    context_tokens: int,
    encoding: tiktoken.Encoding,
) -> list[dict[str, str]]:
    """The chat messages (system + user) asking `question` over the packed passages."""
    shown = pack_passages(
        question, passages, history, context_tokens=context_tokens, encoding=encoding
    )
    system = render("system.j2", abstain_phrase=ABSTAIN_PHRASE)
    user = _user_message(question, [_passage_block(p) for p in shown], _turns(history))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_rewrite_messages(question: str, history: Sequence[Turn]) -> list[dict[str, str]]:
    """The chat messages asking to rewrite a follow-up `question` as a standalone one."""
    prompt = render("rewrite.j2", question=neutralise(question.strip()), history=_turns(history))
    return [{"role": "user", "content": prompt}]
