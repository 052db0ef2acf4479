"""qa: offline retrieval-augmented question answering that cites the exact span behind every claim.

The names most programs need, importable from the top (loaded on first use, so `import qa`
stays fast and pulls in neither torch nor FAISS):

    >>> from qa import Pipeline, Settings
    >>> pipeline = Pipeline.load(Settings(), build_if_missing=True)   # doctest: +SKIP
    >>> pipeline.ask("When was the cryptography law passed?").text    # doctest: +SKIP

The package follows the data path; ARCHITECTURE.md draws the map.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qa.answering.registry import Answerer, Resources, StreamingAnswerer
    from qa.config import Settings
    from qa.errors import QAError
    from qa.pipeline import Pipeline
    from qa.types import Answer, Chunk, Citation, Document, Passage, Turn

# public name -> module that defines it
_EXPORTS = {
    "Pipeline": "qa.pipeline",
    "Settings": "qa.config",
    "Answer": "qa.types",
    "Chunk": "qa.types",
    "Citation": "qa.types",
    "Document": "qa.types",
    "Passage": "qa.types",
    "Turn": "qa.types",
    "QAError": "qa.errors",
    "Answerer": "qa.answering.registry",
    "StreamingAnswerer": "qa.answering.registry",
    "Resources": "qa.answering.registry",
}

__all__ = [
    "Answer",
    "Answerer",
    "Chunk",
    "Citation",
    "Document",
    "Passage",
    "Pipeline",
    "QAError",
    "Resources",
    "Settings",
    "StreamingAnswerer",
    "Turn",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
