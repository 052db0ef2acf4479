"""Hybrid retrieval: modes, explain, de-duplication, BM25 kept in step, reranker, packing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa.cli import main
from qa.config import Settings, load_settings
from qa.ingest.build import build_index
from qa.pipeline import Pipeline, pack
from qa.stores.faiss.store import FaissStore
from qa.types import Answer, Chunk, Passage

QUESTION = "When were the blockchain information service regulations issued?"
BOILERPLATE = (
    "This newsletter is published by the Example Research Institute. All rights reserved. "
    "Reproduction without written permission of the institute is prohibited. Subscriptions "
    "are renewed every year unless cancelled in writing. The institute accepts no liability "
    "for decisions taken on the basis of these reports. Contact the editorial office for "
    "reprint permissions and corrections."
)


def _settings(index_dir: Path, corpus: Path, **overrides: object) -> Settings:
    return load_settings(corpus_dir=corpus, index_dir=index_dir, _env_file=None, **overrides)


def test_explain_lists_every_candidate_with_its_scores(demo_pipeline: Pipeline) -> None:
    retrieval = demo_pipeline.explain(QUESTION, k=4)
    kept = [c for c in retrieval.candidates if c.status == "kept"]
    assert [c.rank for c in kept] == [1, 2, 3, 4]
    assert [c.chunk.id for c in kept] == [p.chunk.id for p in retrieval.passages]
    assert len(retrieval.candidates) > 4
    fused = [c.fused_score for c in retrieval.candidates]
    assert fused == sorted(fused, reverse=True)
    for c in retrieval.candidates:
        assert c.dense_rank is not None or c.bm25_rank is not None
        assert (c.bm25_rank is None) == (c.bm25_score is None)
        assert c.status == "kept" or c.status.startswith(("not in the top", "dropped: duplicate"))
        # Passage.score is the cosine the answerers' abstention is calibrated on.
        if c.rank is not None:
            assert retrieval.passages[c.rank - 1].score == pytest.approx(c.dense_score)
    row = retrieval.candidates[0].to_dict()
    assert set(row) == {
        "chunk_id", "doc_id", "rank", "status", "dense_rank", "dense_score", "bm25_rank",
        "bm25_score", "fused_score", "rerank_score",
    }  # fmt: skip


def test_modes_use_their_own_lists(demo_settings: Settings) -> None:
    dense = Pipeline.load(demo_settings.model_copy(update={"retrieval": "dense"}))
    bm25 = Pipeline.load(demo_settings.model_copy(update={"retrieval": "bm25"}))
    d = dense.explain(QUESTION, k=3)
    b = bm25.explain(QUESTION, k=3)
    assert all(c.bm25_rank is None and c.dense_rank is not None for c in d.candidates)
    assert all(c.dense_rank is None and c.bm25_rank is not None for c in b.candidates)
    # Dense mode ranks by cosine, exactly as the FAISS search does.
    scores = [p.score for p in d.passages]
    assert scores == sorted(scores, reverse=True)
    assert b.passages[0].chunk.id == b.candidates[0].chunk.id


def test_repeated_paragraphs_are_shown_once(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    topics = ["tea exports from Yunnan", "steel output in Hebei", "rice harvests in Hunan"]
    for i, topic in enumerate(topics):
        body = f"Report {i} on {topic}. " + f"The figures on {topic} rose by {i + 3} percent. " * 6
        (corpus / f"doc{i}.txt").write_text(f"{body}\n\n{BOILERPLATE}\n", encoding="utf-8")
    settings = _settings(tmp_path / "index", corpus, chunk_tokens=100, chunk_overlap=5)
    build_index(settings, embedder=embedder)
    pipeline = Pipeline.load(settings)
    question = "Who may reproduce the newsletter of the research institute?"
    retrieval = pipeline.explain(question, k=3)
    texts = [p.chunk.text for p in retrieval.passages]
    assert sum(BOILERPLATE in t for t in texts) == 1, texts
    dropped = [c for c in retrieval.candidates if c.status.startswith("dropped: duplicate of")]
    assert len(dropped) == 2
    assert all(BOILERPLATE in c.chunk.text for c in dropped)
    # With de-duplication off, the copies come back.
    plain = Pipeline.load(settings.model_copy(update={"dedupe": False}))
    texts = [p.chunk.text for p in plain.search(question, k=3)]
    assert sum(BOILERPLATE in t for t in texts) == 3


def test_bm25_stays_in_step_with_faiss_on_incremental_index(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Pandas eat bamboo in Sichuan. " * 20, encoding="utf-8")
    (corpus / "b.txt").write_text("Camels cross the Gobi desert. " * 20, encoding="utf-8")
    settings = _settings(tmp_path / "index", corpus, chunk_tokens=50, chunk_overlap=5)
    build_index(settings, embedder=embedder)
    (corpus / "c.txt").write_text("The zyxwv engine powers trains. " * 20, encoding="utf-8")
    (corpus / "a.txt").write_text("Pandas eat bamboo in Shaanxi too. " * 15, encoding="utf-8")
    report = build_index(settings, embedder=embedder)
    assert (report.added, report.changed, report.unchanged) == (1, 1, 1)
    store = FaissStore.load(settings.index_dir, settings)
    chunks = store.chunks()
    assert store.bm25.n_docs == store.n_chunks == len(chunks) == store.vectors.shape[0]
    # Every chunk is its own best BM25 hit for its own text: positions are FAISS rows.
    for row, chunk in enumerate(chunks):
        hits = store.bm25.search(chunk.title + "\n" + chunk.text, 50)
        assert row in [r for r, _ in hits]
    assert {c.doc_id for c, _ in store.keyword_search("zyxwv", 10)} == {"c.txt"}
    # The incremental result equals a full rebuild, BM25 scores included.
    full = _settings(tmp_path / "full", corpus, chunk_tokens=50, chunk_overlap=5)
    build_index(full, embedder=embedder)
    rebuilt = FaissStore.load(full.index_dir, full)
    assert [c.id for c in rebuilt.chunks()] == [c.id for c in chunks]
    for query in ("pandas bamboo", "zyxwv trains", "desert"):
        assert np.allclose(rebuilt.bm25.scores(query), store.bm25.scores(query))


def test_cli_search_explain_json(demo_settings: Settings, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    args = ["search", QUESTION, "--index", str(demo_settings.index_dir), "-k", "3"]
    assert main([*args, "--json", "--explain"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["n"] for p in out["passages"]] == [1, 2, 3]
    kept = [c for c in out["explain"] if c["status"] == "kept"]
    assert [c["chunk_id"] for c in kept] == [p["chunk_id"] for p in out["passages"]]
    assert {"bm25_rank", "bm25_score", "dense_rank", "dense_score", "fused_score"} <= set(kept[0])
    assert main([*args, "--json"]) == 0
    assert "explain" not in json.loads(capsys.readouterr().out)
    assert main([*args, "--explain"]) == 0
    assert "Retrieval candidates" in capsys.readouterr().out


def test_cross_encoder_reranker_reorders_the_head(demo_settings: Settings, tmp_path: Path) -> None:
    # No cross-encoder ships offline: build a real one from MiniLM's weights with a fresh
    # scoring head. Its scores mean nothing; the code path (load by path, score, re-order) is real.
    from sentence_transformers import CrossEncoder

    from qa.embedding.models import resolve_model_path

    model = CrossEncoder(resolve_model_path("all-MiniLM-L6-v2"), num_labels=1, device="cpu")
    model.save(str(tmp_path / "ce"))
    settings = demo_settings.model_copy(
        update={"reranker": str(tmp_path / "ce"), "rerank_candidates": 6}
    )
    retrieval = Pipeline.load(settings).explain(QUESTION, k=3)
    head = retrieval.candidates[:6]
    assert all(c.rerank_score is not None for c in head)
    assert all(c.rerank_score is None for c in retrieval.candidates[6:])
    reranked = [c.rerank_score for c in head]
    assert reranked == sorted(reranked, reverse=True)
    assert [p.chunk.id for p in retrieval.passages] == [c.chunk.id for c in head[:3]]


def test_unloadable_reranker_is_a_config_error(demo_settings: Settings, tmp_path: Path) -> None:
    from qa.errors import ConfigError

    settings = demo_settings.model_copy(update={"reranker": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="Cannot load the reranker"):
        Pipeline.load(settings).search(QUESTION)


def _passage(rank: int, n_tokens: int) -> Passage:
    chunk = Chunk(f"c{rank}", "d", "t", "x", 0, 1, n_tokens)
    return Passage(chunk=chunk, score=0.5, rank=rank)


def test_pack_keeps_the_rank_order_prefix_within_budget() -> None:
    passages = [_passage(1, 100), _passage(2, 150), _passage(3, 100), _passage(4, 10)]
    assert [p.rank for p in pack(passages, 260)] == [1, 2]
    assert [p.rank for p in pack(passages, 350)] == [1, 2, 3]
    assert [p.rank for p in pack(passages, 50)] == [1]  # never empty


class _Recorder:
    name = "recorder"
    description = "records what it is given"
    packs_context = True

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def answer(self, question, passages, *, history=(), context_tokens=None):  # type: ignore[no-untyped-def]
        self.calls.append((len(passages), context_tokens))
        return Answer(question=question, answer="ok", answerer=self.name)


def test_packing_answerers_get_passages_up_to_the_budget(demo_settings: Settings) -> None:
    pipeline = Pipeline.load(demo_settings)
    recorder = _Recorder()
    pipeline._answerers["recorder"] = recorder  # a one-module fake; the path under test is real
    pipeline.ask(QUESTION, answerer="recorder", context_tokens=400)
    pipeline.ask(QUESTION, answerer="recorder", context_tokens=1500)
    (small, small_budget), (large, large_budget) = recorder.calls
    assert (small_budget, large_budget) == (400, 1500)
    assert 1 <= small < large
    assert large > demo_settings.top_k
    answer = pipeline.ask(QUESTION, answerer="recorder", context_tokens=400, explain=True)
    assert sum(p.chunk.n_tokens for p in answer.passages) <= 400 or len(answer.passages) == 1
    assert answer.to_dict()["explain"]
    assert "explain" not in pipeline.ask(QUESTION, answerer="recorder").to_dict()
