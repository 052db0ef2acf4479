"""Sentence vectors made ahead of questions (qa.server.warmup, ExtractiveAnswerer.warm): a
question after warm-up embeds nothing; warm-up waits while a request holds a worker; /readyz
says how far it got. Real model, real index of the demo corpus, a real server over HTTP."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from qa.answering.extractive.answerer import ExtractiveAnswerer
from qa.config import Settings
from qa.embedding.cache import SENTENCES_FILE, cache_dir_for
from qa.pipeline import Pipeline
from qa.server.admission import Gate
from qa.server.app import create_app
from qa.server.warmup import Warmup
from qa.stores import open_store
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


class WatchedGate(Gate):
    """A Gate counting how often a thread other than the test's asks whether it is busy (the
    warm-up does before each encoder call, and waits while it is)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked = 0

    @property
    def pending(self) -> int:
        if threading.current_thread() is not threading.main_thread():
            self.asked += 1
        return super().pending


def waits_busy(gate: WatchedGate, counting: Counting, *, looks: int = 10) -> None:
    """Wait until the warm-up found the held gate busy `looks` more times, or it embedded."""
    target = gate.asked + looks
    wait_for(lambda: gate.asked >= target or counting.embedded, what="warm-up to look again")


@pytest.fixture
def gate() -> Iterator[WatchedGate]:
    """One worker, as on a one-core machine: holding it makes the server busy."""
    one = WatchedGate(workers=1, queue_limit=4, retry_after=1)
    yield one
    one.close()


def warmed(gate: Gate, pipeline: Pipeline, limit: int = 40_000) -> Warmup:
    """A warm-up of `pipeline`, run to its end."""
    warmup = Warmup(gate, limit=limit)
    warmup.start(pipeline)
    wait_for(lambda: not warmup.running, what="warm-up to finish")
    return warmup


def test_after_warm_up_an_answer_embeds_no_sentence(
    gate: Gate, fresh: tuple[Pipeline, Counting]
) -> None:
    pipeline, counting = fresh
    done = warmed(gate, pipeline).sentences
    assert done > pipeline.store.n_chunks  # several sentences a chunk, each embedded once
    assert len(counting.embedded) == len(set(counting.embedded)) == done
    counting.embedded.clear()
    answers = [pipeline.ask(q) for q in questions()]
    assert any(not a.abstained for a in answers)
    assert counting.embedded == []  # every quoted sentence's vector was made ahead
    # Nothing is left to do for another warm-up of the same chunks.
    answerer = pipeline.answerer()
    assert isinstance(answerer, ExtractiveAnswerer)
    assert answerer.warm_texts(pipeline.store.chunks(), limit=10_000) == []


def test_warm_texts_stop_at_the_limit_counting_the_vectors_kept(
    fresh: tuple[Pipeline, Counting],
) -> None:
    pipeline, counting = fresh
    answerer = pipeline.answerer()
    assert isinstance(answerer, ExtractiveAnswerer)
    chunks = pipeline.store.chunks()
    first = answerer.warm_texts(chunks, limit=20)
    assert len(first) == len(set(first)) == 20 and counting.embedded == []
    answerer.remember(first[:8], counting.embed_documents(first[:8]))
    assert answerer.warm_texts(chunks, limit=20) == first[8:]  # room for 12 more
    assert answerer.warm_texts(chunks, limit=8) == []


def test_a_stopped_warm_up_ends_after_the_call_under_way(
    gate: Gate, fresh: tuple[Pipeline, Counting]
) -> None:
    pipeline, counting = fresh
    answerer = pipeline.answerer()
    assert isinstance(answerer, ExtractiveAnswerer)
    total = len(answerer.warm_texts(pipeline.store.chunks(), limit=40_000))
    warmup = Warmup(gate, limit=40_000)
    warmup.start(pipeline)
    wait_for(lambda: counting.embedded, what="the first encoder call")
    warmup.stop()  # returns once the call under way is done
    stopped_at = len(counting.embedded)
    time.sleep(0.3)
    assert len(counting.embedded) == stopped_at < total  # no call after the stop
    assert warmup.sentences == 0  # a stopped run reports nothing


def test_warm_up_waits_while_a_request_holds_every_worker(
    gate: WatchedGate, fresh: tuple[Pipeline, Counting]
) -> None:
    pipeline, counting = fresh
    warmup = Warmup(gate, limit=40_000)
    with held(gate):
        warmup.start(pipeline)
        assert warmup.running
        waits_busy(gate, counting)  # it looked at the busy worker again and again ...
        assert counting.embedded == []  # ... and embedded no sentence meanwhile
    wait_for(lambda: not warmup.running, what="warm-up to finish once the worker is free")
    assert warmup.sentences == len(counting.embedded) > pipeline.store.n_chunks


def test_a_swap_stops_the_old_run_and_warms_the_new_index(
    gate: Gate, fresh: tuple[Pipeline, Counting]
) -> None:
    pipeline, counting = fresh
    warmup = Warmup(gate, limit=40_000)
    with held(gate):
        warmup.start(pipeline)
        again = Pipeline(pipeline.settings, store=pipeline.store, embedder=pipeline.embedder)
        warmup.start(again)  # the first run is stopped before it embedded anything
    wait_for(lambda: not warmup.running, what="the second warm-up to finish")
    assert warmup.sentences == len(counting.embedded) == len(set(counting.embedded))


def test_warm_up_off_and_too_many_chunks(gate: Gate, fresh: tuple[Pipeline, Counting]) -> None:
    pipeline, counting = fresh
    for limit in (0, pipeline.store.n_chunks - 1):
        warmup = Warmup(gate, limit=limit)
        warmup.start(pipeline)
        assert not warmup.running and warmup.sentences == 0
    assert counting.embedded == []


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


@pytest.fixture
def copied(demo_settings: Settings, tmp_path: Path) -> Settings:
    """Settings of a copy of the demo index, with nothing kept beside it yet."""
    shutil.copytree(demo_settings.index_dir, tmp_path / "index")
    return demo_settings.model_copy(update={"index_dir": tmp_path / "index"})


def served(settings: Settings, demo_pipeline: Pipeline) -> tuple[Pipeline, Counting]:
    """A pipeline as a new server process has it: no sentence vector in memory."""
    counting = Counting(demo_pipeline.embedder)
    pipeline = Pipeline(settings, store=open_store(settings), embedder=counting)  # type: ignore[arg-type]
    return pipeline, counting


def test_a_restart_reads_the_sentence_vectors_from_disk(
    gate: Gate, copied: Settings, demo_pipeline: Pipeline
) -> None:
    first, counting = served(copied, demo_pipeline)
    done = warmed(gate, first).sentences
    assert done == len(counting.embedded) > demo_pipeline.store.n_chunks
    assert (cache_dir_for(copied.index_dir) / SENTENCES_FILE).is_file()
    # A restart reads them back, even while a request holds the only worker: only the
    # encoder waits for an idle core.
    again, counting = served(copied, demo_pipeline)
    with held(gate):
        assert warmed(gate, again).sentences == done
    assert counting.embedded == []
    assert not again.ask(questions()[0]).abstained and counting.embedded == []


def test_kept_vectors_are_read_back_while_the_missing_ones_wait_for_a_core(
    gate: WatchedGate, copied: Settings, demo_pipeline: Pipeline
) -> None:
    total = warmed(gate, served(copied, demo_pipeline)[0]).sentences
    with sqlite3.connect(cache_dir_for(copied.index_dir) / SENTENCES_FILE) as db:
        db.execute("DELETE FROM vectors WHERE hash IN (SELECT hash FROM vectors LIMIT 5)")
    restarted, counting = served(copied, demo_pipeline)
    answerer = restarted.answerer()
    remembered: list[str] = []
    keep = answerer.remember  # type: ignore[attr-defined]

    def remember(texts: Sequence[str], vectors: np.ndarray) -> None:
        remembered.extend(texts)
        keep(texts, vectors)

    answerer.remember = remember  # type: ignore[attr-defined]
    warmup = Warmup(gate, limit=40_000)
    with held(gate):
        warmup.start(restarted)
        wait_for(lambda: len(remembered) == total - 5, what="the kept vectors read back")
        waits_busy(gate, counting)
        assert warmup.running and counting.embedded == []
    wait_for(lambda: not warmup.running, what="the five missing ones embedded")
    assert len(counting.embedded) == 5 and warmup.sentences == total
