"""`qa mcp`: a Model Context Protocol server over stdio, built with the official `mcp` SDK.

Three read-only tools with typed input schemas and structured results (the wire models of
`qa.server.models`, so the JSON is that of the HTTP API and of `qa search/ask --json`):

    search(question, k?)                the passages, with ids, spans and scores
    ask(question, history?)             the Answer JSON
    get_document(doc_id, start?, end?)  the document text, with the span highlighted

The same Settings and index as every other command, answered through the same Pipeline. The
index and the models load once per process, in a thread started before the stdio loop: the MCP
handshake waits only for the heavy imports, the first tool call for the loading. Arguments
that do not fit the schema are refused by the SDK with pydantic's message naming the field; a
QAError (unknown document, blank question, no index ...) comes back as a tool error carrying
its message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from qa.config import Settings
from qa.errors import ConfigError, QAError
from qa.server.models import AnswerResult, DocumentOut, SearchResult, TopK, TurnIn

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from qa.pipeline import Pipeline
    from qa.stores.feedback import FeedbackStore
    from qa.types import Answer

log = logging.getLogger(__name__)

MISSING_SDK = (
    "`qa mcp` needs the MCP SDK, an optional dependency. Install it with "
    "`pip install 'qa[mcp]'` (from a clone: `pip install -e '.[mcp]'`)."
)
INSTRUCTIONS = (
    "Answers questions about one folder of documents. `ask` answers with [n] citations, each "
    "an exact character span of a source document, gives the closest passage found (kind "
    "closest: it may not answer), or abstains; `search` returns the ranked passages only; "
    "`get_document` returns a source text with a span highlighted."
)

Question = Annotated[str, Field(description="The question, in plain words; must not be blank.")]
History = Annotated[
    list[TurnIn] | None,
    Field(description="Earlier turns, oldest first, for a follow-up question."),
]
Offset = Annotated[int | None, Field(ge=0, description="Char offset in the document text.")]


class PipelineLoader:
    """Loads the Pipeline once, in a background thread; `get()` waits for it."""

    def __init__(self, settings: Settings, load: Callable[[Settings], Pipeline]) -> None:
        self._settings = settings
        self._load = load
        self._pipeline: Pipeline | None = None
        self._error: QAError | None = None
        self._thread = threading.Thread(target=self._run, name="qa-load", daemon=True)

    def start(self) -> PipelineLoader:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._pipeline = self._load(self._settings)
        except QAError as exc:
            log.error("Cannot answer questions: %s", exc)
            self._error = exc
        except Exception:
            log.exception("Loading the index failed")
            self._error = QAError("Loading the index failed with an internal error; see the log.")

    def get(self) -> Pipeline:
        """The loaded pipeline, or the QAError that stopped it from loading."""
        self._thread.join()
        if self._pipeline is None:
            raise self._error or QAError("The index is not loaded.")
        return self._pipeline


@contextmanager
def _as_tool_error() -> Iterator[None]:
    """Turn a QAError into the SDK's ToolError, so the client sees our message."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except QAError as exc:
        raise ToolError(str(exc)) from exc


def build_server(
    pipeline: Callable[[], Pipeline], record: Callable[[Answer], Answer] | None = None
) -> MCPServer[Any]:
    """The MCP server with its three tools; `pipeline()` gives the loaded Pipeline, `record`
    gives an answer its answer_id (recorded as served, so it can be rated)."""
    from mcp.server import MCPServer
    from mcp.types import ToolAnnotations

    server: MCPServer[Any] = MCPServer("qa", instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def search(question: Question, k: TopK | None = None) -> SearchResult:
        """The k passages retrieved for a question (default k: the top_k setting), best first.

        Each has `n` (its rank), `doc_id`, `chunk_id`, `text`, `score` and its char span
        `start`/`end` in the document.
        """
        with _as_tool_error():
            retrieval = pipeline().explain(question, k=k)
        return SearchResult.model_validate(retrieval.to_dict(question))

    @server.tool(annotations=read_only)
    def ask(question: Question, history: History = None) -> AnswerResult:
        """Answer a question from the documents, citing passages as [n] with exact spans.

        `abstained` is true (and `answer` says so) when the documents do not support an answer.
        `kind` is "answered", "abstained", or "closest": the closest passage found, which may
        not answer the question (`answer` says so). `confidence` (0-1) is given when known.
        """
        turns = tuple(t.to_turn() for t in history or ())
        with _as_tool_error():
            answer = pipeline().ask(question, history=turns)
            if record is not None:
                answer = record(answer)
        return AnswerResult.model_validate(answer.to_dict())

    @server.tool(annotations=read_only)
    def get_document(doc_id: str, start: Offset = None, end: Offset = None) -> DocumentOut:
        """A source document by id; give `start` and `end` (a citation's span) to highlight it."""
        with _as_tool_error():
            doc = pipeline().document(doc_id).to_dict(start, end)
        return DocumentOut.model_validate(doc)

    return server


def serve_stdio(settings: Settings) -> None:
    """Run the MCP server on stdin/stdout until the client closes them."""
    try:
        import mcp.server  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING_SDK) from None
    from qa.server.run import import_native_libraries

    import_native_libraries(settings)  # before the loader thread starts (see there)
    from qa.pipeline import Pipeline

    def load(s: Settings) -> Pipeline:
        pipeline = Pipeline.load(s, build_if_missing=True)
        pipeline.answerer()  # create the default answerer now, not on the first question
        return pipeline

    loader = PipelineLoader(settings, load).start()
    build_server(loader.get, Recorder(settings, loader.get)).run("stdio")


class Recorder:
    """Records `ask`'s answers as served, in the store `qa serve` uses (opened on first use)."""

    def __init__(self, settings: Settings, pipeline: Callable[[], Pipeline]) -> None:
        self.settings, self.pipeline = settings, pipeline
        self._log: FeedbackStore | None = None

    def __call__(self, answer: Answer) -> Answer:
        from qa.stores import open_feedback
        from qa.stores.feedback import index_version_label

        if self._log is None:
            self._log = open_feedback(self.settings)
        label = index_version_label(self.pipeline().store)
        return self._log.record(answer, index_version=label)
