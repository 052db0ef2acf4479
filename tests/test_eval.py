"""`qa eval`: the question-set reader, per-question scoring, end-to-end runs on a tiny corpus."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from qa.evaluation.questions import (
    EvalQuestion,
    EvalSetError,
    load_questions,
    passage_relevant,
    rank_keys,
)
from qa.evaluation.scoring import Outcome, evaluate, score_question
from qa.types import Answer, Chunk, Citation, Passage, Turn


def _passage(rank: int, doc_id: str, text: str, score: float = 0.5) -> Passage:
    chunk = Chunk(f"{doc_id}#{rank}", doc_id, doc_id.title(), text, 0, len(text), 5)
    return Passage(chunk, score, rank)


def _citation(n: int, passage: Passage, *, supported: bool = True) -> Citation:
    c = passage.chunk
    return Citation(n, c.id, c.doc_id, c.title, c.text, c.start, c.end, None, supported)


# -- reading question sets ------------------------------------------------------------------


def test_load_questions_reads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    record = {
        "id": 7,
        "question": " Where? ",
        "answers": ["Paris"],
        "gold_ids": ["a"],
        "evidence": ["in Paris"],
        "answerable": True,
        "history": ["first", {"role": "assistant", "content": "reply"}],
        "type": "followup",
        "extra": "ignored",
    }
    path.write_text(json.dumps(record) + "\n\n")
    (q,) = load_questions(path).questions
    assert q == EvalQuestion(
        id="7",
        question="Where?",
        answers=("Paris",),
        gold_ids=("a",),
        evidence=("in Paris",),
        answerable=True,
        history=(Turn("user", "first"), Turn("assistant", "reply")),
        type="followup",
    )


def test_malformed_lines_are_reported_with_their_number_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    lines = [
        '{"id": "a", "question": "ok?", "answers": []}',
        '{"id": "b", "question": "broken", ',
        '{"id": "c", "answers": ["x"]}',
        '{"id": "a", "question": "again?", "answers": []}',
        '{"id": "d", "question": "no answers key"}',
        '{"id": "e", "question": "ok too?", "answers": ["y"], "history": [3]}',
        '{"id": "f", "question": "fine", "answers": ["z"]}',
    ]
    path.write_text("\n".join(lines) + "\n")
    loaded = load_questions(path)
    assert [q.id for q in loaded.questions] == ["a", "f"]
    assert [b.line for b in loaded.skipped] == [2, 3, 4, 5, 6]
    assert loaded.skipped[1].reason == '"question" must be a non-empty string'
    assert loaded.skipped[2].reason == "duplicate id 'a'"


def test_missing_and_empty_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match=r"nope\.jsonl does not exist"):
        load_questions(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(EvalSetError, match=r"holds no valid question \(the file is empty\)"):
        load_questions(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n")
    with pytest.raises(EvalSetError, match="line 1: a line must be a JSON object"):
        load_questions(bad)


def test_evidence_objects_with_text_or_sentences_are_read(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    lines = [
        {"id": "t", "question": "a?", "answers": ["x"], "evidence": [{"text": "X is so."}]},
        {"id": "s", "question": "b?", "answers": ["y"],
         "evidence": ["Plain.", {"sentences": ["Y is one.", " Y is two. "], "title": "T"}]},
        {"id": "bad", "question": "c?", "answers": ["z"], "evidence": [{"title": "no text"}]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    loaded = load_questions(path)
    assert [(q.id, q.evidence) for q in loaded.questions] == [
        ("t", ("X is so.",)),
        ("s", ("Plain.", "Y is one. Y is two.")),
    ]
    (bad,) = loaded.skipped
    assert (bad.line, bad.reason) == (
        3,
        '"evidence" items must be strings or objects with a "text" string or a "sentences" '
        "list of strings",
    )


def test_quotes_evidence_counts_answers_quoting_a_whole_gold_sentence() -> None:
    text = "Rollo led the Normans. Normandy is in France, its capital is Rouen. It rains."
    p = _passage(1, "a", text)
    gold = "Normandy is in France, its capital is Rouen."
    q = EvalQuestion("1", "Where?", answers=("France",), evidence=(gold,))

    def quoting(*quotes: str) -> bool | None:
        cites = tuple(
            Citation(1, "a#1", "a", "A", x, text.index(x), text.index(x) + len(x), None, True)
            for x in quotes
        )
        answer = Answer(q.question, " ".join(quotes), "test", citations=cites, passages=(p,))
        return score_question(Outcome(q, (p,), answer), k=1).quotes_evidence

    assert quoting(gold) is True
    assert quoting("Normandy is in France, its capital") is True  # most of it
    assert quoting("its capital is Rouen") is False  # the smaller part
    assert quoting("Rollo led the Normans.", "It rains.") is False
    assert quoting(text) is True
    abstained = Answer(q.question, "?", "test", abstained=True, passages=(p,))
    assert score_question(Outcome(q, (p,), abstained), k=1).quotes_evidence is None
    report = evaluate([Outcome(q, (p,), abstained)], k=1)
    assert report["answers"]["quotes_evidence"] is None


def test_should_abstain() -> None:
    assert EvalQuestion("1", "q", answers=()).should_abstain
    assert EvalQuestion("2", "q", answers=("x",), answerable=False).should_abstain
    assert not EvalQuestion("3", "q", answers=(), answerable=True).should_abstain  # SciFact


# -- relevance and scoring ------------------------------------------------------------------


def test_gold_ids_rank_documents_by_their_best_chunk() -> None:
    q = EvalQuestion("1", "q", gold_ids=("b", "c"))
    passages = [_passage(1, "a", "x"), _passage(2, "b", "y"), _passage(3, "a", "z")]
    passages.append(_passage(4, "c", "w"))
    ranking = rank_keys(q, passages)
    assert ranking is not None
    assert ranking.keys == ("a", "b", "c")
    assert passage_relevant(q, passages[1]) is True
    assert passage_relevant(EvalQuestion("2", "q"), passages[1]) is None


def test_evidence_relevance_survives_chunk_boundaries() -> None:
    evidence = "The treaty was signed in Paris on 3 September 1783 by both parties."
    q = EvalQuestion("1", "q", answers=("1783",), evidence=(evidence,))
    whole = _passage(
        1, "d", "Intro.  THE treaty was signed\nin Paris on 3 September 1783 by both parties."
    )
    most = _passage(2, "d", "The treaty was signed in Paris on 3 September 1783")  # 74%
    little = _passage(3, "d", "1783 by both parties. Then more text follows here.")  # 25%
    assert [passage_relevant(q, p) for p in (whole, most, little)] == [True, True, False]
    ranking = rank_keys(q, [little, most, whole])
    assert ranking is not None
    # The second passage covering the same evidence adds nothing (like a repeated document).
    assert ranking.keys == ("passage:3", "evidence:0", "passage:1")
    assert ranking.relevant == {"evidence:0"}


def test_evidence_in_one_chunk_is_one_relevant_unit_and_split_evidence_two() -> None:
    one, two = "Rollo was a Viking leader.", "Normandy was named after the Northmen."
    q = EvalQuestion("1", "q", answers=("x",), evidence=(one, two))
    both = _passage(1, "d", f"{one} {two}")
    s = score_question(Outcome(q, (both, _passage(2, "d", "other"))), k=1)
    assert s.retrieval == {
        "hit@1": 1.0, "recall@1": 1.0, "recall@100": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0,
    }  # fmt: skip
    split = (_passage(1, "d", "nothing"), _passage(2, "d", one), _passage(3, "d", two))
    s = score_question(Outcome(q, split), k=2)
    assert s.retrieval is not None
    assert (s.retrieval["recall@2"], s.retrieval["mrr@10"]) == (0.5, 0.5)
    ideal = 1 + 1 / math.log2(3)
    assert s.retrieval["ndcg@10"] == pytest.approx((1 / math.log2(3) + 0.5) / ideal)
    missing = score_question(Outcome(q, split[:2]), k=2)  # `two` never retrieved: still needed
    assert missing.retrieval is not None
    assert missing.retrieval["ndcg@10"] == pytest.approx((1 / math.log2(3)) / ideal)


def test_score_question_answer_citations_and_reasons() -> None:
    p1, p2 = _passage(1, "a", "Rollo led the Normans."), _passage(2, "b", "Normandy is in France.")
    q = EvalQuestion("1", "Where is Normandy?", answers=("France",), gold_ids=("b",))
    answer = Answer(
        question=q.question,
        answer="Normandy is in France. [2] Rollo led them [1]",
        answerer="test",
        short_answer="in France",
        citations=(_citation(2, p2), _citation(1, p1, supported=False)),
        passages=(p1, p2),
        timings_ms=(("retrieve", 2.0), ("answer", 3.0), ("total", 5.0)),
    )
    s = score_question(Outcome(q, (p1, p2), answer), k=1)
    assert s.retrieval is not None and s.retrieval["hit@1"] == 0.0
    assert s.retrieval["mrr@10"] == 0.5
    assert s.answer == {"em": 0.0, "f1": pytest.approx(2 / 3), "contains_gold": 1.0}
    assert s.citations == (True, False)
    assert s.supported == (True, False)
    assert s.cited_relevant is True
    assert s.abstain == (False, False)
    assert s.reasons == ("retrieval miss",)


def test_abstentions_count_as_empty_predictions() -> None:
    p = _passage(1, "a", "Unrelated text.")
    unanswerable = EvalQuestion("u", "What is X?", answers=())
    answerable = EvalQuestion("a", "What is Y?", answers=("Y",), gold_ids=("a",))
    abstained = Answer("?", "I couldn't find this.", "test", abstained=True, passages=(p,))
    s_u = score_question(Outcome(unanswerable, (p,), abstained), k=5)
    s_a = score_question(Outcome(answerable, (p,), abstained), k=5)
    assert (s_u.answer, s_u.squad2, s_u.reasons) == (None, {"em": 1.0, "f1": 1.0}, ())
    assert s_a.answer == {"em": 0.0, "f1": 0.0, "contains_gold": 0.0}
    assert s_a.reasons == ("false abstention",)
    assert s_a.cited_relevant is None  # abstained: citation recall does not apply


def test_citation_markers_do_not_count_against_the_answer_text() -> None:
    p = _passage(1, "a", "Paris is the capital.")
    q = EvalQuestion("1", "Capital?", answers=("Paris",), gold_ids=("a",))
    answer = Answer(q.question, "Paris [1].", "test", passages=(p,), citations=(_citation(1, p),))
    s = score_question(Outcome(q, (p,), answer), k=5)
    assert s.answer == {"em": 1.0, "f1": 1.0, "contains_gold": 1.0}


def test_report_shape_and_null_metrics() -> None:
    p = _passage(1, "a", "text")
    q1 = EvalQuestion("1", "q", gold_ids=("a",), type="x")
    q2 = EvalQuestion("2", "q", gold_ids=("b",), type="y")
    report = evaluate([Outcome(q1, (p,)), Outcome(q2, (p,))], k=5)
    assert set(report) == {
        "n", "retrieval", "answers", "citations", "abstention", "kinds", "latency_ms",
        "by_type", "failures", "recall_curve",
    }  # fmt: skip
    assert report["n"] == 2
    assert report["retrieval"]["hit@5"] == 0.5
    assert report["retrieval"]["recall@5"] == 0.5
    assert report["retrieval"]["ndcg@10"] == 0.5
    assert report["answers"] == {
        "em": None, "f1": None, "contains_gold": None, "quotes_evidence": None,
        "squad2_em": None, "squad2_f1": None, "n": 0,
    }  # fmt: skip
    assert set(report["abstention"].values()) == {None}
    assert report["kinds"]["n"] == 0 and set(report["kinds"]["counts"].values()) == {None}
    assert report["latency_ms"] == {"p50": None, "p95": None}
    assert set(report["by_type"]) == {"x", "y"}
    assert report["by_type"]["y"]["retrieval"]["hit@5"] == 0.0
    assert [f["id"] for f in report["failures"]] == ["2"]
    assert report["failures"][0]["reasons"] == ["retrieval miss"]
    assert report["recall_curve"]["1"] == 0.5


def test_html_report_is_self_contained_and_escaped() -> None:
    from qa.evaluation.report import metric_paths, render_html
    from qa.evaluation.scoring import Run

    p = _passage(1, "a", "<b>bold</b> text")
    q = EvalQuestion("1", "<script>alert(1)</script>?", answers=("x",), gold_ids=("b",))
    answer = Answer(q.question, "no [1]", "test", passages=(p,), timings_ms=(("total", 12.0),))
    report = evaluate([Outcome(q, (p,), answer)], k=5)
    assert "retrieval.hit@5" in metric_paths(report)
    assert "failures" not in " ".join(metric_paths(report))
    page = render_html([Run("base", {}, report, (12.0,))], source="set.jsonl", k=5)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; text" in page
    assert page.count("<svg") == 2
    assert "retrieval miss" in page and "wrong answer" in page


# -- end to end: the real model on a tiny corpus -----------------------------------------------

CORPUS = [
    {"id": "eiffel", "title": "Eiffel Tower", "text": "The Eiffel Tower is a wrought-iron "
     "lattice tower in Paris, France. It was completed in 1889 for the World's Fair."},
    {"id": "photo", "title": "Photosynthesis", "text": "Photosynthesis is the process by "
     "which green plants use sunlight, water and carbon dioxide to make glucose and oxygen."},
    {"id": "wall", "title": "Great Wall", "text": "The Great Wall of China is a series of "
     "fortifications built across northern China over many centuries, mostly of stone."},
]  # fmt: skip
QUESTIONS = [
    {"id": "q1", "question": "In which year was the Eiffel Tower completed?", "answers": ["1889"],
     "gold_ids": ["eiffel"], "type": "factoid"},
    {"id": "q2", "question": "What gas do plants produce in photosynthesis?",
     "answers": ["oxygen"], "evidence": ["to make glucose and oxygen"], "type": "factoid"},
    {"id": "q3", "question": "What material is the Great Wall of China mostly made of?",
     "answers": ["stone"], "gold_ids": ["wall"], "type": "paraphrase"},
    {"id": "q4", "question": "Who was the first emperor of the Aztecs?", "answers": [],
     "type": "unanswerable"},
]  # fmt: skip


class FirstPassage:
    """A predictable answerer: quotes the top passage, abstains when its score is low."""

    name = "first-passage"
    description = "test: quotes the top passage"

    def answer(self, question: str, passages: Sequence[Passage], *, history=()) -> Answer:  # type: ignore[no-untyped-def]
        top = passages[0]
        if top.score < 0.3:
            return Answer(
                question, "Not found.", self.name, abstained=True, passages=tuple(passages)
            )
        words = top.chunk.text.rstrip(".").split()
        return Answer(
            question,
            f"{top.chunk.text} [1]",
            self.name,
            short_answer=words[-1],
            citations=(_citation(1, top),),
            passages=tuple(passages),
        )


@pytest.fixture
def first_passage() -> Iterator[str]:
    from qa.answering.registry import register_answerer, unregister_answerer

    register_answerer(FirstPassage.name, lambda settings, resources: FirstPassage(), "test")
    yield FirstPassage.name
    unregister_answerer(FirstPassage.name)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    lines = [json.dumps(q) for q in QUESTIONS]
    lines.insert(1, "{not json")
    (folder / "questions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _args(*argv: str) -> argparse.Namespace:
    from qa.evaluation import run as qa_eval

    parser = argparse.ArgumentParser()
    qa_eval.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_eval_dataset_end_to_end(dataset: Path, tmp_path: Path, first_passage: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from qa.evaluation import run as qa_eval

    out, html = tmp_path / "out.json", tmp_path / "out.html"
    index = tmp_path / "idx"
    argv = [str(dataset), "--index", str(index), "-k", "1", "--answerer", first_passage]
    argv += ["--json", str(out)]
    code = qa_eval.run(_args(*argv, "--report", str(html), "--min", "retrieval.hit@1=1"))
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 4
    assert report["retrieval"] == {
        "hit@1": 1.0, "recall@1": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0, "recall@100": 1.0, "n": 3,
    }  # fmt: skip
    # Short answers are the last words: "Fair", "oxygen", "stone"; every text holds its gold,
    # and the one question with evidence quotes it.
    assert report["answers"] == {
        "em": 2 / 3, "f1": 2 / 3, "contains_gold": 1.0, "quotes_evidence": 1.0,
        "squad2_em": 0.75, "squad2_f1": 0.75, "n": 3,
    }  # fmt: skip
    assert report["citations"] == {"precision": 1.0, "recall": 1.0, "supported": 1.0, "n": 3}
    assert report["abstention"] == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "false_abstention_rate": 0.0,
    }  # fmt: skip
    assert report["latency_ms"]["p50"] > 0
    assert set(report["latency_ms"]) >= {"p50", "p95", "retrieve", "answer"}
    assert report["skipped_lines"] == [
        {"line": 2, "reason": "Expecting property name enclosed in double quotes: "
         "line 1 column 2 (char 1)"}
    ]  # fmt: skip
    assert set(report["by_type"]) == {"factoid", "paraphrase", "unanswerable"}
    assert report["by_type"]["unanswerable"]["abstention"]["recall"] == 1.0
    assert [(f["id"], f["reasons"]) for f in report["failures"]] == []
    assert (index / "manifest.json").is_file()
    assert (tmp_path / "idx.corpus" / "corpus.jsonl").is_file()
    page = html.read_text()
    assert page.startswith("<!doctype html>")
    assert "<svg" in page and "<script" not in page and "<link" not in page
    captured = capsys.readouterr()
    assert "retrieval.hit@1" in captured.out
    assert "questions.jsonl:2" in captured.err

    # A gate that cannot pass exits 1; the index is reused (nothing embedded again).
    assert qa_eval.run(_args(*argv, "--min", "retrieval.ndcg@10=1.01")) == 1
    err = capsys.readouterr().err
    assert "(0 embedded now)" in err
    assert "gate retrieval.ndcg@10: 1.0000 >= 1.01 FAIL" in err


def test_compare_answerers_and_retrieval_only(
    dataset: Path,
    tmp_path: Path,
    first_passage: str,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    from qa.evaluation import run as qa_eval

    index = tmp_path / "idx"
    out = tmp_path / "cmp.json"
    argv = [str(dataset), "--index", str(index), "-k", "2", "--json", str(out), "--report"]
    argv += [str(tmp_path / "cmp.html"), "--compare", f"answerer={first_passage}"]
    assert qa_eval.run(_args(*argv, "answerer=extractive")) == 0
    payload = json.loads(out.read_text())
    first, extractive = payload["variants"]
    assert (first["label"], extractive["label"]) == (
        f"answerer={first_passage}",
        "answerer=extractive",
    )
    assert first["answers"]["contains_gold"] == 1.0
    assert first["retrieval"] == extractive["retrieval"]
    # The real answerer on questions its top passage answers in so many words: every answer
    # holds its gold and quotes its evidence, every citation is right and supported, and it
    # abstains on the unanswerable one only. (Its short answers are its own span choice.)
    answers = extractive["answers"]
    assert (answers["n"], answers["contains_gold"], answers["quotes_evidence"]) == (3, 1.0, 1.0)
    citations = extractive["citations"]
    assert (citations["precision"], citations["recall"], citations["supported"]) == (1, 1, 1)
    assert citations["n"] >= 3  # one at least per answer (a second sentence where it adds)
    assert extractive["abstention"] == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "false_abstention_rate": 0.0,
    }  # fmt: skip
    assert extractive["failures"] == []
    assert "Δ" in capsys.readouterr().out

    # Retrieval only, through a plain questions file on the index built above.
    questions = tmp_path / "questions.jsonl"
    questions.write_text((dataset / "questions.jsonl").read_text())
    single = tmp_path / "single.json"
    argv = [str(questions), "--index", str(index), "--retrieval-only", "--json", str(single)]
    assert qa_eval.run(_args(*argv, "-k", "3")) == 0
    report = json.loads(single.read_text())
    assert report["retrieval"]["hit@3"] == 1.0
    assert report["answers"]["em"] is None
    assert set(report["abstention"].values()) == {None}


def test_unknown_gate_metric_lists_the_metrics(dataset: Path, tmp_path: Path) -> None:
    from qa.errors import ConfigError
    from qa.evaluation import run as qa_eval

    argv = [str(dataset), "--index", str(tmp_path / "idx"), "--retrieval-only"]
    with pytest.raises(ConfigError, match=r"Unknown metric 'retrieval\.hit@9'.*retrieval\.hit@5"):
        qa_eval.run(_args(*argv, "--min", "retrieval.hit@9=0.5"))


def test_missing_question_file_is_an_error(tmp_path: Path) -> None:
    from qa.evaluation import run as qa_eval

    with pytest.raises(EvalSetError, match="does not exist"):
        qa_eval.run(_args(str(tmp_path / "none.jsonl")))
