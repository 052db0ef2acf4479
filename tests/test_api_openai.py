"""The OpenAI-compatible routes, driven by the official `openai` client over real uvicorn."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr

from qa.config import Settings
from qa.pipeline import Pipeline
from qa.server.app import LOADING, create_app
from tests.needs import dependency
from tests.server_utils import LiveServer, answering_alone

if TYPE_CHECKING:
    import openai

QUESTION = (
    "When did the National Network Information Office issue the Regulations on the "
    "Management of Blockchain Information Services?"
)
GOLD = "January 10, 2019"
UNANSWERABLE = "How much did Shenzhen allocate to its blockchain fund?"  # demo-046
NOT_FOUND = "I couldn't find this in the documents."
HISTORY = [
    {"role": "user", "content": "What did the National Network Information Office issue?"},
    {"role": "assistant", "content": "The Regulations on blockchain information services."},
]
MODELS = ["qa-extractive", "qa-openai-chat"]


def _openai() -> Any:
    dependency(find_spec("openai") is not None, "the openai client: pip install -e '.[test]'")
    import openai

    return openai


@pytest.fixture(scope="module")
def live(demo_settings: Settings, demo_pipeline: Pipeline) -> Iterator[LiveServer]:
    with LiveServer(create_app(demo_settings, pipeline=demo_pipeline)) as server:
        yield server


def client_for(url: str, key: str = "no-key-needed") -> openai.OpenAI:
    # No retries: a refused request must surface at once, as the error it is.
    return _openai().OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture
def client(live: LiveServer) -> openai.OpenAI:
    return client_for(live.url)


def without_timings(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("timings_ms", "answer_id")}


# -- answers --------------------------------------------------------------------------------


def test_models_lists_one_model_per_answerer(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == MODELS
    assert {(m.object, m.owned_by) for m in models} == {("model", "qa")}


def test_plain_question_is_the_ask_answer(client: openai.OpenAI, demo_pipeline: Pipeline) -> None:
    completion = client.chat.completions.create(
        model="qa-extractive", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == "qa-extractive"
    (choice,) = completion.choices
    assert (choice.message.role, choice.finish_reason) == ("assistant", "stop")
    text = choice.message.content
    assert text is not None and GOLD in text
    qa = (completion.model_extra or {})["qa"]
    assert qa["answer"] == text and qa["abstained"] is False
    # What the question gets the first time, from a pipeline that kept nothing: the served
    # pipeline would give back the answer the HTTP call just stored.
    expected = answering_alone(demo_pipeline).ask(QUESTION, answerer="extractive").to_dict()
    assert without_timings(qa) == without_timings(expected)
    assert qa["citations"]
    for c in qa["citations"]:
        assert f"[{c['n']}]" in text
        assert demo_pipeline.document(c["doc_id"]).text[c["start"] : c["end"]] == c["quote"]


def test_follow_up_from_earlier_messages(client: openai.OpenAI, demo_pipeline: Pipeline) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},  # ignored
        *HISTORY,
        {"role": "user", "content": [{"type": "text", "text": "When?"}]},
    ]
    completion = client.chat.completions.create(model="qa-extractive", messages=messages)
    qa = (completion.model_extra or {})["qa"]
    assert qa["question"] == "When?"
    assert qa["standalone_question"] == "When (National Network Information Office issue)?"
    from qa.types import Turn

    history = tuple(Turn(m["role"], m["content"]) for m in HISTORY)  # type: ignore[arg-type]
    expected = answering_alone(demo_pipeline).ask("When?", history=history).to_dict()
    assert without_timings(qa) == without_timings(expected)
    assert completion.choices[0].message.content == expected["answer"]


def test_stream_deltas_join_into_the_final_text(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="qa-extractive",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    qa = (last.model_extra or {})["qa"]
    assert text == qa["answer"] and GOLD in text and len(chunks) >= 3


def test_stream_ends_with_done(live: LiveServer) -> None:
    body = {"model": "qa-extractive", "messages": [{"role": "user", "content": QUESTION}]}
    r = httpx.post(f"{live.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [block for block in r.text.split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["qa"]["abstained"] is False


def test_unanswerable_question_abstains(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="qa-extractive", messages=[{"role": "user", "content": UNANSWERABLE}]
    )
    assert completion.choices[0].message.content == NOT_FOUND
    qa = (completion.model_extra or {})["qa"]
    assert qa["abstained"] is True and qa["abstain_reason"] and qa["citations"] == []


# -- errors, in OpenAI's shape --------------------------------------------------------------


def test_unknown_model_is_not_found_with_our_message(client: openai.OpenAI) -> None:
    openai = _openai()
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": QUESTION}]
        )
    error = caught.value
    assert error.status_code == 404
    assert error.message.startswith("Error code: 404 - Unknown model 'gpt-4o'")
    assert error.body["message"] == (
        "Unknown model 'gpt-4o'. Available: qa-extractive, qa-openai-chat "
        "(GET /v1/models lists them; each is qa-<answerer>)."
    )
    assert (error.type, error.param, error.code) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )


LONG = "x" * 2001
BAD_MESSAGES = [
    ([], "messages", "The message list is empty. Send at least one user message"),
    (
        [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
        "messages",
        "The last message is from 'assistant'; it must be the user's question",
    ),
    ([{"role": "user", "content": "  "}], "messages", "The question is empty"),
    ([{"role": "user", "content": LONG}], "messages", "the limit is 2000 (setting max_question"),
    ([{"role": "tool", "content": "x"}], "messages.0.role", "Input should be 'system', 'develo"),
    (
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "messages.0.content.str",
        "Input should be 'text'",
    ),
]


@pytest.mark.parametrize(("messages", "param", "message"), BAD_MESSAGES)
def test_bad_messages_are_bad_requests(
    client: openai.OpenAI, messages: list[Any], param: str, message: str
) -> None:
    openai = _openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="qa-extractive", messages=messages)
    assert caught.value.status_code == 400
    assert message in caught.value.message
    assert (caught.value.type, caught.value.param) == ("invalid_request_error", param)


def test_raw_errors_use_the_openai_shape(live: LiveServer) -> None:
    url = f"{live.url}/v1/chat/completions"
    r = httpx.post(url, content=b'{"model": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert set(r.json()) == {"error"}
    assert "the body is not valid JSON" in r.json()["error"]["message"]
    big = {"model": "qa-extractive", "messages": [{"role": "user", "content": "y" * 70_000}]}
    r = httpx.post(url, json=big)
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["message"].startswith("The request body is over the limit of 65536 bytes")
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    r = httpx.get(f"{live.url}/v1/embeddings")
    assert (r.status_code, r.json()["error"]["message"]) == (404, "Not Found")
    # The rest of the API keeps its own shape.
    assert httpx.post(f"{live.url}/ask", json={"question": " "}).json().keys() == {"detail"}


def test_wrong_key_is_an_authentication_error(
    demo_settings: Settings, demo_pipeline: Pipeline
) -> None:
    openai = _openai()
    settings = demo_settings.model_copy(update={"api_key": SecretStr("s3cret-key")})
    with LiveServer(create_app(settings, pipeline=demo_pipeline)) as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            client_for(server.url, "s3cret-kez").models.list()
        message = "Wrong API key. Check it and send it as `Bearer <key>`."
        assert caught.value.body["message"] == message
        assert (caught.value.type, caught.value.code) == ("authentication_error", "invalid_api_key")
        with pytest.raises(openai.AuthenticationError, match="Wrong API key"):
            client_for(server.url, "s3cret-kez").chat.completions.create(
                model="qa-extractive", messages=[{"role": "user", "content": QUESTION}]
            )
        r = httpx.get(f"{server.url}/v1/models")
        assert r.status_code == 401 and "needs an API key" in r.json()["error"]["message"]
        right = client_for(server.url, "s3cret-key")
        assert [m.id for m in right.models.list().data] == MODELS


def test_llm_backend_down_is_a_server_error_naming_it(
    demo_settings: Settings, demo_pipeline: Pipeline
) -> None:
    openai = _openai()
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = demo_settings.model_copy(
        update={"llm_base_url": f"http://127.0.0.1:{port}/v1", "llm_max_retries": 0}
    )
    pipeline = Pipeline(settings, store=demo_pipeline.store, embedder=demo_pipeline.embedder)
    messages = [{"role": "user", "content": QUESTION}]
    with LiveServer(create_app(settings, pipeline=pipeline)) as server:
        client = client_for(server.url)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="qa-openai-chat", messages=messages)
        assert caught.value.status_code == 502
        assert f"127.0.0.1:{port}" in caught.value.message
        # Streamed, it fails after the role chunk went out: the client raises our message.
        stream = client.chat.completions.create(
            model="qa-openai-chat", messages=messages, stream=True
        )
        with pytest.raises(openai.APIError, match=f"127.0.0.1:{port}"):
            list(stream)


def test_not_ready_is_503_in_openai_shape(demo_settings: Settings) -> None:
    openai = _openai()
    with LiveServer(create_app(demo_settings)) as server:
        with pytest.raises(openai.InternalServerError) as caught:
            client_for(server.url).models.list()
        assert caught.value.status_code == 503
        assert caught.value.body["message"] == LOADING
        assert caught.value.response.headers["retry-after"] == "5"


# -- what else OpenAI's reference puts on a completion ---------------------------------------


def expected_usage(demo_settings: Settings, messages: list[str], qa: dict[str, Any]) -> Any:
    """`usage` counted as the server must: the index's tiktoken encoding, messages + passages
    read for the prompt, the answer text for the completion."""
    from qa.ingest.tokens import count_tokens, get_encoding

    encoding = get_encoding(demo_settings.encoding)
    prompt = sum(count_tokens(m, encoding) for m in messages)
    prompt += sum(count_tokens(p["text"], encoding) for p in qa["passages"])
    completion = count_tokens(qa["answer"], encoding)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_completion_carries_usage_and_the_reference_fields(
    live: LiveServer, demo_settings: Settings
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        *HISTORY,
        {"role": "user", "content": QUESTION},
    ]
    body = {"model": "qa-extractive", "messages": messages}
    r = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    completion = r.json()
    assert (completion["system_fingerprint"], completion["service_tier"]) == (None, None)
    assert completion["choices"][0]["message"]["annotations"] == []
    texts = [m["content"] for m in messages]
    assert completion["usage"] == expected_usage(demo_settings, texts, completion["qa"])
    assert completion["usage"]["completion_tokens"] > 5
    # The abstention is an answer too: it has its usage.
    unanswerable = {
        "model": "qa-extractive",
        "messages": [{"role": "user", "content": UNANSWERABLE}],
    }
    abstained = httpx.post(f"{live.url}/v1/chat/completions", json=unanswerable, timeout=60).json()
    assert abstained["qa"]["abstained"] is True
    assert abstained["usage"] == expected_usage(demo_settings, [UNANSWERABLE], abstained["qa"])


def test_the_official_client_reads_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="qa-extractive", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.usage is not None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


def test_stream_with_include_usage_ends_with_a_usage_chunk(
    client: openai.OpenAI, demo_settings: Settings
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="qa-extractive",
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *answer_chunks, last = chunks
    assert last.choices == [] and last.usage is not None
    assert [c.usage for c in answer_chunks] == [None] * len(answer_chunks)
    assert {(c.system_fingerprint, c.service_tier) for c in chunks} == {(None, None)}
    qa = (answer_chunks[-1].model_extra or {})["qa"]
    assert answer_chunks[-1].choices[0].finish_reason == "stop"
    assert last.usage.model_dump(
        include={"prompt_tokens", "completion_tokens", "total_tokens"}
    ) == (expected_usage(demo_settings, [QUESTION], qa))


def test_stream_without_include_usage_has_no_usage(live: LiveServer) -> None:
    body = {"model": "qa-extractive", "messages": [{"role": "user", "content": QUESTION}]}
    r = httpx.post(f"{live.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60)
    chunks = [json.loads(e.removeprefix("data: ")) for e in r.text.split("\n\n")[:-2] if e]
    assert chunks and all("usage" not in c and c["choices"] for c in chunks)
    assert {(c["system_fingerprint"], c["service_tier"]) for c in chunks} == {(None, None)}


def test_options_qa_does_not_use_are_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="qa-extractive",
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        max_completion_tokens=50,
        n=1,
        user="someone",
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        stop=["\n\n"],
        logit_bias={"50256": -100},
        metadata={"team": "docs"},
        stream_options=None,
    )
    assert GOLD in (completion.choices[0].message.content or "")


@pytest.mark.parametrize("n", [2, 0])
def test_more_than_one_choice_is_a_clear_bad_request(client: openai.OpenAI, n: int) -> None:
    openai = _openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="qa-extractive", messages=[{"role": "user", "content": QUESTION}], n=n
        )
    error = caught.value
    assert error.body["message"] == (
        f"Invalid request: n: n={n} is not supported: qa gives one answer per question. "
        "Send n=1 or leave n out."
    )
    assert (error.status_code, error.type, error.param) == (400, "invalid_request_error", "n")


def test_an_llm_servers_own_counts_are_the_usage(
    demo_settings: Settings, demo_pipeline: Pipeline
) -> None:
    from tests.test_openai_chat import USAGE, counting_llm, serve

    with serve(counting_llm) as llm_url:
        settings = demo_settings.model_copy(update={"llm_base_url": llm_url})
        pipeline = Pipeline(settings, store=demo_pipeline.store, embedder=demo_pipeline.embedder)
        with LiveServer(create_app(settings, pipeline=pipeline)) as server:
            client = client_for(server.url)
            messages: Any = [{"role": "user", "content": QUESTION}]
            completion = client.chat.completions.create(model="qa-openai-chat", messages=messages)
            assert completion.usage is not None
            assert completion.usage.model_dump(exclude_none=True) == USAGE
            stream = client.chat.completions.create(
                model="qa-openai-chat",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            last = list(stream)[-1]
            assert last.usage is not None and last.usage.model_dump(exclude_none=True) == USAGE
