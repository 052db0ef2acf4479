"""Answering: ranked Passages -> a cited Answer, by a pluggable Answerer.

`registry` (the Answerer protocol and the name -> factory registry, entry-point group
`qa.answerers`), `extractive/` (the offline default: whole-sentence quotes, short spans,
abstention), `openai_chat` (any OpenAI-compatible server, with `llm` and `prompts`),
`citations` and `grounding` (quotes located at exact document offsets, checked for support) and
`followup` (standalone questions from a conversation). Knows nothing of the server or the store.
"""

from qa.answering.registry import (
    Answerer,
    Registry,
    Resources,
    StreamingAnswerer,
    available_answerers,
    create_answerer,
    register_answerer,
    unregister_answerer,
)

__all__ = [
    "Answerer",
    "Registry",
    "Resources",
    "StreamingAnswerer",
    "available_answerers",
    "create_answerer",
    "register_answerer",
    "unregister_answerer",
]
