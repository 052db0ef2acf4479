"""The openai-chat answerer: HTTP contract against a real llama.cpp server, errors, citations.

Real-server tests check the contract (request shape, SSE streaming, the Answer's invariants),
not the 135M model's wisdom. Error paths use tiny local HTTP servers (a sleeper, a 503-then-ok
server, a 401 echoing the request headers) and a closed port.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from qa.answering.grounding import normalise_markers
from qa.answering.llm import ChatClient, TokenUsage, metered
from qa.answering.openai_chat import DESCRIPTION, OpenAIChatAnswerer, is_abstention
from qa.answering.prompts import ABSTAIN_PHRASE
from qa.answering.registry import Resources, available_answerers, create_answerer
from qa.config import load_settings
from qa.errors import BackendError, BackendTimeoutError
from qa.types import Answer, Chunk, Passage, Turn
from tests.llm_server import free_port, llm_server  # noqa: F401  (llm_server is a fixture)

KEY = "sk-test-SECRET-4242-do-not-leak"
DOC = (
    "Blockchain policy notes.\n"
    "The city of Huangpu launched a blockchain fund of 1 billion yuan in 2018. "
    "Shanghai issued no such rules.\n"
    "In September 2017 the People's Bank of China banned initial coin offerings."
)


def passage_at(rank: int, sentence: str) -> Passage:
    """A passage over the `DOC` text starting at `sentence` (to the end of its line)."""
    start = DOC.index(sentence)
    end = DOC.find("\n", start) if "\n" in DOC[start:] else len(DOC)
    text = DOC[start:end]
    return Passage(Chunk(f"c{rank}", "notes.txt", "Notes", text, start, end, 20), 0.9, rank)


PASSAGES = (passage_at(1, "The city of Huangpu"), passage_at(2, "In September 2017"))


def answerer(base_url: str, *, embedder: Any = None, **client: Any) -> OpenAIChatAnswerer:
    options: dict[str, Any] = {"model": "local", "max_tokens": 48, "max_retries": 0, **client}
    return OpenAIChatAnswerer(ChatClient(base_url, **options), embedder=embedder)


def completion(content: str) -> bytes:
    message = {"role": "assistant", "content": content}
    return json.dumps({"choices": [{"index": 0, "message": message}]}).encode()


@contextmanager
def serve(handle: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A local HTTP server whose POST handler is `handle`; yields its /v1 base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@contextmanager
def recording_proxy(upstream: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A proxy to `upstream` that records each request (path, headers, JSON body)."""
    seen: list[dict[str, Any]] = []

    def handle(h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers["Content-Length"]))
        seen.append({"path": h.path, "headers": dict(h.headers), "body": json.loads(body)})
        target = upstream.removesuffix("/v1") + h.path
        headers = {"Content-Type": "application/json"}
        with httpx.stream("POST", target, content=body, headers=headers, timeout=120) as r:
            h.send_response(r.status_code)
            h.send_header("Content-Type", r.headers["content-type"])
            h.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for chunk in r.iter_raw():
                h.wfile.write(chunk)
                h.wfile.flush()

    with serve(handle) as url:
        yield url, seen


def assert_answer_contract(answer: Answer, shown: tuple[Passage, ...]) -> None:
    """Invariants every openai-chat Answer keeps, whatever the model wrote."""
    assert answer.answerer == "openai-chat"
    assert answer.passages == shown
    ranks = {p.rank for p in shown}
    for c in answer.citations:
        assert c.n in ranks
        assert DOC[c.start : c.end] == c.quote
    if not answer.abstained:
        assert (answer.abstain_reason is None) == any(c.supported for c in answer.citations)


# -- against the real llama.cpp server --------------------------------------------------


def test_request_shape_and_real_reply(llm_server: str) -> None:  # noqa: F811
    with recording_proxy(llm_server) as (url, seen):
        chat = answerer(url, api_key=KEY)
        answer = chat.answer("What did Huangpu launch?", PASSAGES)
    (request,) = seen
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert sorted(body) == ["max_tokens", "messages", "model", "stream", "temperature"]
    assert (body["model"], body["max_tokens"], body["temperature"], body["stream"]) == (
        "local", 48, 0.0, False
    )  # fmt: skip
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert PASSAGES[0].chunk.text in body["messages"][1]["content"]
    assert answer.answer  # the model said something
    assert_answer_contract(answer, PASSAGES)


def test_stream_yields_deltas_then_the_final_answer(llm_server: str) -> None:  # noqa: F811
    with recording_proxy(llm_server) as (url, seen):
        chat = answerer(url)
        items = list(chat.stream("What did Huangpu launch?", PASSAGES))
    assert seen[0]["body"]["stream"] is True
    assert seen[0]["body"]["stream_options"] == {"include_usage": True}  # the server's counts
    *deltas, final = items
    assert isinstance(final, Answer)
    assert len(deltas) >= 2 and all(isinstance(d, str) and d for d in deltas)
    assert final == chat.finish("What did Huangpu launch?", "".join(deltas), PASSAGES)
    assert_answer_contract(final, PASSAGES)


def test_the_real_servers_token_counts_reach_the_meter(llm_server: str) -> None:  # noqa: F811
    chat = answerer(llm_server)
    meter = metered()
    chat.answer("What did Huangpu launch?", PASSAGES)
    assert meter.complete and meter.calls == 1
    assert meter.prompt_tokens > 50 and 0 < meter.completion_tokens <= 48


def test_rewrite_question_against_the_real_server(llm_server: str) -> None:  # noqa: F811
    history = [Turn("user", "What did Huangpu launch?"), Turn("assistant", "A fund [1].")]
    rewritten = answerer(llm_server).rewrite_question("How big was it?", history)
    # Either a one-line question or, when the small model rambles, the original question.
    assert rewritten.endswith("?") and "\n" not in rewritten


def test_registry_builds_it_from_settings(llm_server: str, embedder: Any) -> None:  # noqa: F811
    assert available_answerers()["openai-chat"] == DESCRIPTION
    settings = load_settings(llm_base_url=llm_server, llm_max_tokens=32, _env_file=None)
    chat = create_answerer("openai-chat", settings, Resources(embedder=embedder))
    assert isinstance(chat, OpenAIChatAnswerer)
    assert (chat.client.base_url, chat.client.max_tokens, chat.embedder) == (
        llm_server, 32, embedder
    )  # fmt: skip
    assert_answer_contract(chat.answer("Who banned ICOs?", PASSAGES), PASSAGES)


# -- errors ------------------------------------------------------------------------------


def test_timeout_names_the_backend_and_setting() -> None:
    calls: list[str] = []
    release = threading.Event()

    def slow(h: BaseHTTPRequestHandler) -> None:
        calls.append(h.path)
        release.wait(30)  # far longer than the client's timeout

    with serve(slow) as url:
        chat = answerer(url, timeout=0.3, max_retries=2)
        try:
            with pytest.raises(BackendTimeoutError) as info:
                chat.answer("Q?", PASSAGES)
            with pytest.raises(BackendTimeoutError):
                list(chat.stream("Q?", PASSAGES))
        finally:
            release.set()
    assert str(info.value) == (
        f"The LLM backend at {url} did not answer within 0.3s (ReadTimeout). "
        "Raise QA_LLM_TIMEOUT (llm_timeout) or use a faster model/server."
    )
    assert len(calls) == 2  # a read timeout is not retried


def test_server_down_is_a_clear_backend_error(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    chat = answerer(url, max_retries=1)
    with pytest.raises(BackendError) as info:
        chat.answer("Q?", PASSAGES)
    assert not isinstance(info.value, BackendTimeoutError)
    message = str(info.value)
    assert message.startswith(f"The LLM backend at {url} is unreachable: ")
    assert message.endswith("Start it or set QA_LLM_BASE_URL.")
    assert "retry 1/1" in caplog.text
    with pytest.raises(BackendError, match="is unreachable"):
        list(chat.stream("Q?", PASSAGES))
    # Follow-up rewriting falls back to the question itself.
    assert chat.rewrite_question("And then?", [Turn("user", "Hi")]) == "And then?"


def test_5xx_is_retried_then_succeeds() -> None:
    calls: list[int] = []

    def flaky(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        calls.append(1)
        if len(calls) < 3:
            reply(h, 503, b'{"error": {"message": "loading model"}}')
        else:
            reply(h, 200, completion("Huangpu launched a blockchain fund in 2018 [1]."))

    with serve(flaky) as url:
        with pytest.raises(BackendError, match=r"answered HTTP 503: loading model\.$"):
            answerer(url, max_retries=1).answer("Q?", PASSAGES)
        calls.clear()
        answer = answerer(url, max_retries=2).answer("Q?", PASSAGES)
    assert len(calls) == 3
    assert answer.answer == "Huangpu launched a blockchain fund in 2018 [1]."


def test_api_key_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def echo_headers(h: BaseHTTPRequestHandler) -> None:  # a server that leaks what it got
        reply(h, 401, json.dumps({"error": {"message": f"bad key: {dict(h.headers)}"}}).encode())

    with serve(echo_headers) as url:
        chat = answerer(url, api_key=KEY, max_retries=2)
        with pytest.raises(BackendError) as info:
            chat.answer("Q?", PASSAGES)
    assert "HTTP 401" in str(info.value) and "Check QA_LLM_API_KEY." in str(info.value)
    assert "Bearer ***" in str(info.value)
    down = answerer(f"http://127.0.0.1:{free_port()}/v1", api_key=KEY, max_retries=1)
    with pytest.raises(BackendError) as down_info:
        down.answer("Q?", PASSAGES)
    settings = load_settings(llm_api_key=KEY, _env_file=None)
    from_settings = OpenAIChatAnswerer.from_settings(settings)
    texts = [caplog.text, str(info.value), str(down_info.value), repr(chat.client)]
    texts += [repr(settings), str(settings.model_dump()), repr(from_settings.client)]
    assert all(KEY not in text for text in texts)
    assert from_settings.client._http().headers["Authorization"] == f"Bearer {KEY}"


# -- turning a reply into an Answer ---------------------------------------------------------


def test_markers_are_parsed_in_every_form() -> None:
    assert normalise_markers("A [1, 2]. B [1][2]. C [1-2]. D [Passage 2].") == (
        "A [1][2]. B [1][2]. C [1][2]. D [2]."
    )
    reply_text = "Huangpu launched a blockchain fund [1, 2]. The PBOC banned ICOs in 2017 [2][1]."
    answer = answerer("http://unused/v1").finish("Q?", reply_text, PASSAGES)
    assert answer.answer == (
        "Huangpu launched a blockchain fund [1][2]. The PBOC banned ICOs in 2017 [2][1]."
    )
    assert sorted({c.n for c in answer.citations}) == [1, 2]


def test_out_of_range_markers_are_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    text = "Huangpu launched a blockchain fund of 1 billion yuan [1]. It was huge [7]. And [0]."
    answer = answerer("http://unused/v1").finish("Q?", text, PASSAGES)
    assert (
        answer.answer
        == "Huangpu launched a blockchain fund of 1 billion yuan [1]. It was huge. And."
    )
    assert [c.n for c in answer.citations] == [1]
    assert "Dropped citation markers [0, 7]: the prompt showed passages [1, 2] only" in caplog.text


def test_citations_carry_document_offsets_and_support() -> None:
    text = (
        "Huangpu launched a blockchain fund of 1 billion yuan in 2018 [1]. "
        "In 2018 the city of Huangpu started a 1 billion yuan fund [1]. "
        "Paris is the capital of France [2]."
    )
    answer = answerer("http://unused/v1").finish("Q?", text, PASSAGES)
    quote, sentence, paris = answer.citations
    # An exact quote is located as is; a paraphrase cites its best supporting sentence.
    exact = "Huangpu launched a blockchain fund of 1 billion yuan in 2018"
    whole = "The city of Huangpu launched a blockchain fund of 1 billion yuan in 2018."
    assert (quote.n, quote.quote, quote.supported) == (1, exact, True)
    assert (quote.start, quote.end) == (DOC.index(exact), DOC.index(exact) + len(exact))
    assert quote.start == PASSAGES[0].chunk.start + PASSAGES[0].chunk.text.index(exact)
    assert (sentence.n, sentence.quote, sentence.supported) == (1, whole, True)
    assert (sentence.start, sentence.end) == (DOC.index(whole), DOC.index(whole) + len(whole))
    assert (paris.n, paris.supported, paris.doc_id) == (2, False, "notes.txt")
    assert DOC[paris.start : paris.end] == paris.quote
    assert answer.abstain_reason == (
        'Partly unverified: the cited passages do not support "Paris is the capital of France".'
    )
    assert not answer.abstained


@pytest.mark.parametrize(
    "claim",
    [
        "Kunming launched a blockchain fund of 1 billion yuan in 2018 [1].",  # swapped name
        "Huangpu launched a blockchain fund of 1 billion yuan in 2019 [1].",  # swapped year
        "The weather is sunny [1].",
    ],
)
def test_an_answer_without_supported_citations_is_flagged(claim: str) -> None:
    answer = answerer("http://unused/v1").finish("Q?", claim, PASSAGES)
    assert [c.supported for c in answer.citations] == [False]
    assert answer.abstain_reason == (
        "Unverified: no claim of this answer is supported by the passages it cites."
    )
    assert not answer.abstained and answer.answer == claim


def test_uncited_answer_is_flagged() -> None:
    answer = answerer("http://unused/v1").finish("Q?", "Huangpu did things.", PASSAGES)
    assert answer.citations == ()
    assert answer.abstain_reason == (
        "Unverified: the answer cites no passage, so none of it could be checked."
    )


def test_embeddings_accept_a_paraphrase_that_shares_few_words(embedder: Any) -> None:
    claim = "Huangpu's authorities set up a fund worth one billion yuan [1]."
    lexical_only = answerer("http://unused/v1").finish("Q?", claim, PASSAGES)
    with_embeddings = answerer("http://unused/v1", embedder=embedder).finish("Q?", claim, PASSAGES)
    assert [c.supported for c in lexical_only.citations] == [False]
    assert [c.supported for c in with_embeddings.citations] == [True]
    assert with_embeddings.abstain_reason is None


@pytest.mark.parametrize(
    ("text", "abstained"),
    [
        (ABSTAIN_PHRASE, True),
        ("I couldn’t find this in the documents.", True),
        ("I could not find that in the provided passages. Sorry.", True),
        ("The documents do not contain this information.", True),
        ("This is not mentioned in the passages.", True),
        ("Huangpu launched a fund [1]. Other cities could not find funding.", False),
    ],
)
def test_abstention_is_recognised(text: str, abstained: bool) -> None:
    assert is_abstention(text) is abstained
    answer = answerer("http://unused/v1").finish("Q?", text, PASSAGES)
    assert answer.abstained is abstained
    if abstained:
        assert answer.abstain_reason == "The LLM found no answer in the retrieved passages."
        assert answer.citations == ()


def test_no_passages_abstains_without_calling_the_server() -> None:
    chat = answerer(f"http://127.0.0.1:{free_port()}/v1")
    answer = chat.answer("Q?", ())
    assert (answer.answer, answer.abstained) == (ABSTAIN_PHRASE, True)
    *deltas, final = chat.stream("Q?", ())
    assert deltas == [ABSTAIN_PHRASE] and final.abstained


@pytest.mark.parametrize(
    ("model_reply", "expected"),
    [
        (
            'Standalone question: "How big was the Huangpu fund?"\nextra',
            "How big was the Huangpu fund?",
        ),
        ("The fund was 1 billion yuan [1].", "How big was it?"),  # an answer, not a question
        ("", "How big was it?"),
    ],
)
def test_rewrite_output_is_cleaned_or_ignored(model_reply: str, expected: str) -> None:
    def fixed(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        reply(h, 200, completion(model_reply))

    with serve(fixed) as url:
        history = [Turn("user", "What did Huangpu launch?"), Turn("assistant", "A fund [1].")]
        assert answerer(url).rewrite_question("How big was it?", history) == expected


def test_pipeline_asks_a_follow_up_through_the_llm(llm_server: str, demo_settings: Any) -> None:  # noqa: F811
    from qa.pipeline import Pipeline

    settings = load_settings(
        corpus_dir=demo_settings.corpus_dir,
        index_dir=demo_settings.index_dir,
        answerer="openai-chat",
        llm_base_url=llm_server,
        llm_max_tokens=48,
        _env_file=None,
    )
    pipeline = Pipeline.load(settings)
    history = [Turn("user", "What did Huangpu District issue?"), Turn("assistant", "Rules [1].")]
    events = list(pipeline.ask_stream("When was that?", history=history))
    kinds = [e.kind for e in events]
    assert kinds[0] == "passages" and kinds[-1] == "answer" and "delta" in kinds
    final = events[-1].data
    assert final.answerer == "openai-chat" and final.question == "When was that?"
    assert final.standalone_question  # the LLM's rewrite, or the question when it was unusable
    shown = final.passages
    assert shown and {c.n for c in final.citations} <= {p.rank for p in shown}
    document = pipeline.document(shown[0].chunk.doc_id)
    assert all(document.text[c.start : c.end] == c.quote for c in final.citations)


# -- the server's token counts (`usage`) --------------------------------------------------------

USAGE = {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}
REPLY = "Huangpu launched a blockchain fund in 2018 [1]."


def counting_llm(h: BaseHTTPRequestHandler) -> None:
    """An LLM server that reports `USAGE`, streamed (on a last chunk, as OpenAI does) or not."""
    body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
    if not body["stream"]:
        message = {"role": "assistant", "content": REPLY}
        payload = {"choices": [{"index": 0, "message": message}], "usage": USAGE}
        reply(h, 200, json.dumps(payload).encode())
        return
    events = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in REPLY.split(" ")]
    events.append({"choices": [], "usage": USAGE})
    data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.end_headers()
    h.wfile.write(data.encode())


def test_the_meter_adds_up_what_the_server_reports_blocking_and_streamed() -> None:
    with serve(counting_llm) as url:
        chat = answerer(url)
        meter = metered()
        chat.answer("Q?", PASSAGES)
        list(chat.stream("Q?", PASSAGES))
        assert meter == TokenUsage(642, 24, calls=2, reported=2) and meter.complete
        # A call made in another context (another request) counts on its own meter, not this.
        contextvars.Context().run(chat.answer, "Q?", PASSAGES)
    assert meter == TokenUsage(642, 24, calls=2, reported=2)


def test_a_call_without_usage_makes_the_meter_incomplete() -> None:
    def silent(h: BaseHTTPRequestHandler) -> None:
        h.rfile.read(int(h.headers["Content-Length"]))
        reply(h, 200, completion(REPLY))

    with serve(counting_llm) as counting, serve(silent) as plain:
        meter = metered()
        answerer(counting).answer("Q?", PASSAGES)
        answerer(plain).answer("Q?", PASSAGES)
    assert meter == TokenUsage(321, 12, calls=2, reported=1) and not meter.complete
