"""Sentence vectors made ahead of questions (qa.server.warmup, ExtractiveAnswerer.warm): a
question after warm-up embeds nothing; warm-up waits while a request holds a worker; /readyz
says how far it got. Real model, real index of the demo corpus, a real server over HTTP."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from qa.answering.extractive.answerer import ExtractiveAnswerer
from qa.answering.extractive.sentences import sentences_of
from qa.config import Settings
from qa.embedding.cache import SENTENCES_FILE, cache_dir_for
from qa.pipeline import Pipeline
from qa.server.admission import Gate
from qa.server.app import create_app
from qa.server.warmup import Warmup
from qa.stores import open_store
from qa.types import Chunk, Passage
from tests.conftest import DEMO_QUESTIONS
from tests.server_utils import LiveServer, held, wait_for


class Counting:
    """The real embedder, counting the texts it embeds as documents (sentences)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.embedded: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.embedded.extend(texts)
        return self.inner.embed_documents(texts, progress=progress)


def questions() -> list[str]:
    import json

    lines = DEMO_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()][:12]


@pytest.fixture
def fresh(demo_pipeline: Pipeline) -> tuple[Pipeline, Counting]:
    """A pipeline over the demo index whose answerer has embedded no sentence yet (and keeps
    none on disk: other tests' servers warm the demo index's cache)."""
    counting = Counting(demo_pipeline.embedder)
    settings = demo_pipeline.settings.model_copy(update={"embedding_cache": False})
    pipeline = Pipeline(settings, store=demo_pipeline.store, embedder=counting)  # type: ignore[arg-type]
    return pipeline, counting


def test_after_warm_up_an_answer_embeds_no_sentence(fresh: tuple[Pipeline, Counting]) -> None:
    pipeline, counting = fresh
    answerer = pipeline.answerer()
    assert isinstance(answerer, ExtractiveAnswerer)
    done = answerer.warm(pipeline.store.chunks(), limit=10_000, go_on=lambda: True)
    assert done > pipeline.store.n_chunks  # several sentences a chunk, each embedded once
    assert len(counting.embedded) == len(set(counting.embedded)) == done
    counting.embedded.clear()
    answers = [pipeline.ask(q) for q in questions()]
    assert any(not a.abstained for a in answers)
    assert counting.embedded == []  # every quoted sentence's vector was made ahead
    # A second warm-up of the same chunks finds nothing left to do.
    assert answerer.warm(pipeline.store.chunks(), limit=10_000, go_on=lambda: True) == 0


def test_warm_up_stops_when_told_and_at_its_limit(fresh: tuple[Pipeline, Counting]) -> None:
    pipeline, counting = fresh
    answerer = pipeline.answerer()
    assert isinstance(answerer, ExtractiveAnswerer)
    asked: list[int] = []

    def once() -> bool:
        asked.append(1)
        return len(asked) == 1

    chunks = pipeline.store.chunks()

    def text(chunk: Chunk) -> str:
        return pipeline.store.document(chunk.doc_id).text

    stopped = answerer.warm(chunks, limit=10_000, go_on=once)
    assert 0 < stopped == len(counting.embedded) <= 8  # one encoder call, then it stopped
    limited = answerer.warm(chunks, limit=20, go_on=lambda: True)
    # It stops at the first chunk that would take the cache past the limit.
    assert stopped + limited >= 20 > stopped
    most = max(len(sentences_of([Passage(chunk=c, score=0.0, rank=1)], text)) for c in chunks)
    assert stopped + limited < 20 + most


def test_warm_up_waits_while_a_request_holds_every_worker(
    fresh: tuple[Pipeline, Counting],
) -> None:
    pipeline, counting = fresh
    gate = Gate(workers=1, queue_limit=4, retry_after=1)
    warmup = Warmup(gate, limit=40_000)
    with held(gate) as release:
        warmup.start(pipeline)
        assert warmup.running
        assert not release.wait(0.5)  # half a second with the only worker busy
        assert counting.embedded == []  # ... and no sentence embedded meanwhile
    wait_for(lambda: not warmup.running, what="warm-up to finish once the worker is free")
    assert warmup.sentences == len(counting.embedded) > pipeline.store.n_chunks
    gate.close()


def test_a_swap_stops_the_old_run_and_warms_the_new_index(
    fresh: tuple[Pipeline, Counting],
) -> None:
    pipeline, counting = fresh
    gate = Gate(workers=1, queue_limit=4, retry_after=1)
    warmup = Warmup(gate, limit=40_000)
    with held(gate):
        warmup.start(pipeline)
        again = Pipeline(pipeline.settings, store=pipeline.store, embedder=pipeline.embedder)
        warmup.start(again)  # the first run is stopped before it embedded anything
    wait_for(lambda: not warmup.running, what="the second warm-up to finish")
    assert warmup.sentences == len(counting.embedded) == len(set(counting.embedded))
    gate.close()


def test_warm_up_off_and_too_many_chunks(fresh: tuple[Pipeline, Counting]) -> None:
    pipeline, counting = fresh
    gate = Gate(workers=1, queue_limit=4, retry_after=1)
    for limit in (0, pipeline.store.n_chunks - 1):
        warmup = Warmup(gate, limit=limit)
        warmup.start(pipeline)
        assert not warmup.running and warmup.sentences == 0
    assert counting.embedded == []
    gate.close()


def test_readyz_reports_the_warm_up_of_a_served_index(fresh: tuple[Pipeline, Counting]) -> None:
    pipeline, counting = fresh
    app = create_app(pipeline.settings, pipeline=pipeline)
    with LiveServer(app) as server:

        def warmed() -> bool:
            body = httpx.get(server.url + "/readyz", timeout=30).json()
            return body["warming_sentences"] is False and body["warmed_sentences"] > 0

        wait_for(warmed, what="/readyz to report the warm-up done")
        body = httpx.get(server.url + "/readyz", timeout=30).json()
        assert body["warmed_sentences"] == len(counting.embedded)
        counting.embedded.clear()
        reply = httpx.post(server.url + "/ask", json={"question": questions()[0]}, timeout=60)
        assert reply.status_code == 200 and reply.json()["citations"]
        assert counting.embedded == []


def test_a_restart_reads_the_sentence_vectors_from_disk(
    demo_settings: Settings, demo_pipeline: Pipeline, tmp_path: Path
) -> None:
    shutil.copytree(demo_settings.index_dir, tmp_path / "index")
    settings = demo_settings.model_copy(update={"index_dir": tmp_path / "index"})
    gate = Gate(workers=1, queue_limit=4, retry_after=1)

    def served() -> tuple[Pipeline, Counting, Warmup]:
        counting = Counting(demo_pipeline.embedder)
        pipeline = Pipeline(settings, store=open_store(settings), embedder=counting)  # type: ignore[arg-type]
        warmup = Warmup(gate, limit=40_000)
        warmup.start(pipeline)
        wait_for(lambda: not warmup.running, what="warm-up to finish")
        return pipeline, counting, warmup

    _, first, warmed = served()
    assert warmed.sentences == len(first.embedded) > demo_pipeline.store.n_chunks
    assert (cache_dir_for(settings.index_dir) / SENTENCES_FILE).is_file()
    # A restart (a new process would hold nothing either) reads them back, even while a
    # request holds the only worker: only the encoder waits for an idle core.
    with held(gate):
        again, second, rewarmed = served()
    assert rewarmed.sentences == warmed.sentences and second.embedded == []
    assert not again.ask(questions()[0]).abstained and second.embedded == []
    gate.close()


def test_kept_vectors_are_read_back_while_the_missing_ones_wait_for_a_core(
    demo_settings: Settings, demo_pipeline: Pipeline, tmp_path: Path
) -> None:
    shutil.copytree(demo_settings.index_dir, tmp_path / "index")
    settings = demo_settings.model_copy(update={"index_dir": tmp_path / "index"})
    gate = Gate(workers=1, queue_limit=4, retry_after=1)
    store = open_store(settings)
    first = Warmup(gate, limit=40_000)
    first.start(Pipeline(settings, store=store, embedder=demo_pipeline.embedder))
    wait_for(lambda: not first.running, what="the first warm-up")
    total = first.sentences
    with sqlite3.connect(cache_dir_for(settings.index_dir) / SENTENCES_FILE) as db:
        db.execute("DELETE FROM vectors WHERE hash IN (SELECT hash FROM vectors LIMIT 5)")
    counting = Counting(demo_pipeline.embedder)
    restarted = Pipeline(settings, store=store, embedder=counting)  # type: ignore[arg-type]
    answerer = restarted.answerer()
    remembered: list[str] = []
    keep = answerer.remember  # type: ignore[attr-defined]

    def remember(texts: Sequence[str], vectors: np.ndarray) -> None:
        remembered.extend(texts)
        keep(texts, vectors)

    answerer.remember = remember  # type: ignore[attr-defined]
    warmup = Warmup(gate, limit=40_000)
    with held(gate) as release:
        warmup.start(restarted)
        wait_for(lambda: len(remembered) == total - 5, what="the kept vectors read back")
        assert not release.wait(0.3) and warmup.running and counting.embedded == []
    wait_for(lambda: not warmup.running, what="the five missing ones embedded")
    assert len(counting.embedded) == 5 and warmup.sentences == total
    gate.close()
