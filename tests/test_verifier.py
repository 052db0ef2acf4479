"""The trained answer verifier: shipped weights load offline without torch, the training entry
point runs on a tiny slice, its ONNX export agrees with the training framework, and the answer
step reads questions against sentences (names introduced by a role noun, nobody named,
instruction words)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa.answering.extractive.guards import key_words
from qa.answering.extractive.spans import question_type
from qa.config import load_settings
from qa.resources import VERIFIER_DIR, verifier_version

# A small labelled set in the `qa eval` format, written here (not copied from any data set).
PASSAGES = {
    "harbor": (
        "Harbor Street Laboratory",
        "The Harbor Street Laboratory opened in 1901 beside the old customs house. Its founder "
        "was the chemist Ada Lindqvist, who ran it for thirty years. The laboratory studied "
        "salt water corrosion of ship hulls. In 1935 it moved to a larger building on Pier "
        "Road. Its library holds twelve thousand volumes.",
    ),
    "tbp": (
        "Trusted Blockchain Program",
        "The Trusted Blockchain Program certifies blockchain services for public agencies. It "
        "was launched by the National Standards Office in 2018. Applicants submit an audit "
        "report and a security plan. Certified services are listed in a public register "
        "that is updated every quarter.",
    ),
    "mill": (
        "Riverside Mill",
        "Riverside Mill was built in 1862 to grind wheat for the valley's farms. A flood in "
        "1904 destroyed its water wheel. The mill was rebuilt with a steam engine two years "
        "later. It closed in 1958 and is now a museum of rural life.",
    ),
}
QUESTIONS = [
    ("q1", "Who founded the Harbor Street Laboratory?", ["Ada Lindqvist"], "harbor"),
    ("q2", "When did the Harbor Street Laboratory open?", ["1901"], "harbor"),
    ("q3", "What did the laboratory study?", ["salt water corrosion of ship hulls"], "harbor"),
    ("q4", "How many volumes does the library hold?", ["twelve thousand"], "harbor"),
    ("q5", "Who launched the Trusted Blockchain Program?", ["National Standards Office"], "tbp"),
    ("q6", "What must applicants submit?", ["an audit report and a security plan"], "tbp"),
    ("q7", "When was Riverside Mill built?", ["1862"], "mill"),
    ("q8", "What destroyed the water wheel?", ["A flood"], "mill"),
    ("q9", "When did the mill close?", ["1958"], "mill"),
    ("q10", "Who was the mayor when the mill closed?", [], "mill"),
    ("q11", "How much did certification cost?", [], "tbp"),
    ("q12", "Who was the first director of the museum?", [], "mill"),
]


def write_set(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for doc_id, (title, text) in PASSAGES.items():
            f.write(json.dumps({"id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "questions.jsonl").open("w") as f:
        for qid, question, answers, doc in QUESTIONS:
            f.write(json.dumps({"id": qid, "question": question, "answers": answers,
                                "answerable": bool(answers),
                                "gold_ids": [doc] if answers else []}) + "\n")  # fmt: skip
    return folder


def test_shipped_verifier_loads_offline_without_torch() -> None:
    meta = json.loads((VERIFIER_DIR / "meta.json").read_text())
    onnx_file = VERIFIER_DIR / "verifier.onnx"
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == meta["sha256"]
    assert (VERIFIER_DIR / "CARD.md").read_text().count(meta["sha256"]) == 1
    assert (VERIFIER_DIR / "combiner.json").is_file()
    # A fresh interpreter with no network variables to fall back on: the weights are files of
    # the package, and scoring imports neither torch nor transformers.
    code = (
        "import sys, json\n"
        "from qa.answering.verifier import load_verifier\n"
        "v = load_verifier()\n"
        "r = v.verify('When was the cryptography law passed?', ["
        "'The cryptography law was passed on October 26, 2019.', 'The weather was mild.'])\n"
        "print(json.dumps([v.version, r[0].probability, r[1].probability,"
        " 'torch' in sys.modules, 'transformers' in sys.modules]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    version, p_answer, p_other, torch_loaded, transformers_loaded = json.loads(out.stdout)
    assert version == verifier_version() and version.startswith(meta["version"])
    assert p_answer > 0.5 > p_other
    assert not torch_loaded and not transformers_loaded


def test_readyz_and_manifest_name_the_verifier(demo_pipeline) -> None:  # type: ignore[no-untyped-def]
    version = verifier_version()
    assert version is not None
    assert demo_pipeline.verifier_version() == version
    manifest = json.loads((demo_pipeline.settings.index_dir / "manifest.json").read_text())
    assert manifest["versions"]["verifier"] == version


def test_changed_verifier_never_reuses_cached_answers(demo_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The pipeline's answer cache keys on the answerer's version: a verifier with another
    fitted combination gives a fresh answer, not the old one's."""
    import shutil

    from qa.pipeline import Pipeline

    question = "When was the cryptography law passed?"
    first = Pipeline.load(demo_settings)
    assert first.ask(question).kind == "answered"
    other = tmp_path / "verifier"
    shutil.copytree(VERIFIER_DIR, other)
    combiner = json.loads((other / "combiner.json").read_text())
    combiner["answer_threshold"] = 0.999  # nothing is sure enough: only "closest" answers
    combiner["abstain_threshold"] = 0.0
    (other / "combiner.json").write_text(json.dumps(combiner))
    second = Pipeline.load(demo_settings.model_copy(update={"verifier": str(other)}))
    b = second.ask(question)
    assert b.kind == "closest" and not b.abstained
    assert b.answer.startswith("I'm not sure the documents answer this.")
    assert second.verifier_version() != first.verifier_version()


@pytest.fixture(scope="module")
def small_pipeline(tmp_path_factory: pytest.TempPathFactory, embedder):  # type: ignore[no-untyped-def]
    from qa.ingest.build import build_index
    from qa.pipeline import Pipeline

    root = tmp_path_factory.mktemp("small")
    corpus = root / "corpus"
    corpus.mkdir()
    for doc_id, (title, text) in PASSAGES.items():
        (corpus / f"{doc_id}.txt").write_text(f"{title}\n\n{text}\n")
    settings = load_settings(corpus_dir=corpus, index_dir=root / "index", _env_file=None)
    build_index(settings, embedder=embedder)
    return Pipeline.load(settings)


def test_who_question_gets_the_name_a_role_noun_introduces(small_pipeline) -> None:  # type: ignore[no-untyped-def]
    answer = small_pipeline.ask("Who founded the Harbor Street Laboratory?")
    assert answer.kind == "answered", answer.abstain_reason
    assert answer.short_answer is not None and "Ada Lindqvist" in answer.short_answer
    assert "Its founder was the chemist Ada Lindqvist" in answer.citations[0].quote


def test_who_question_over_passages_naming_nobody_is_not_answered(small_pipeline) -> None:  # type: ignore[no-untyped-def]
    answer = small_pipeline.ask("Who is the chief executive of the Trusted Blockchain Program?")
    assert answer.kind in ("closest", "abstained")
    assert answer.short_answer is None


def test_instruction_words_are_not_demanded_as_document_terms(small_pipeline) -> None:  # type: ignore[no-untyped-def]
    assert key_words("Provide examples of what the laboratory studied. Explain why.") == []
    assert key_words("Discuss how the Harbor Street Laboratory began") == [
        "Harbor",
        "Street",
        "Laboratory",
    ]
    answer = small_pipeline.ask("Describe what the Harbor Street Laboratory studied.")
    assert "Describe" not in (answer.abstain_reason or "")
    assert not answer.abstained
    assert "salt water corrosion" in answer.answer


def test_when_inside_a_clause_is_not_a_date_question() -> None:
    assert question_type("What should a team consider when implementing a ledger?") is None
    assert question_type("When was the mill built?") == "date"
    assert question_type("In 1935, when did it move?") == "date"


def test_tiny_training_run_exports_onnx_that_agrees_with_torch(tmp_path: Path) -> None:
    """The entry point on a tiny slice (a few steps), then the exported ONNX model against the
    training framework's forward pass on fixed inputs."""
    import torch

    from qa.answering.verifier import Verifier
    from qa.training.pairs import load_question_set
    from qa.training.run import main
    from qa.training.verifier import MAX_TOKENS, TrainConfig, export, train

    folder = write_set(tmp_path / "set")
    out = tmp_path / "model"
    assert main(["--no-public", "--set", str(folder), "--max-pairs", "24", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    # Two epochs (the default) of one batch each.
    assert meta["train"]["steps"] == 2 and meta["train"]["pairs"] == 24
    assert hashlib.sha256((out / "verifier.onnx").read_bytes()).hexdigest() == meta["sha256"]
    assert "your question set" in (out / "CARD.md").read_text()

    missing = main(["--squad-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert missing == 2 and not (tmp_path / "x").exists()
    assert main(["--no-public", "--set", str(tmp_path), "--out", str(tmp_path / "x")]) == 2

    pairs = load_question_set(folder)
    assert {p.label for p in pairs} == {0, 1}
    net, tokenizer, report = train(pairs, (), TrainConfig(max_pairs=16, batch_size=8, bf16=False))
    fp32 = tmp_path / "fp32"
    export(net, tokenizer, fp32, heldout=pairs[:8], report=report, sources=["t"], quantize=False)
    question = "Who founded the Harbor Street Laboratory?"
    # A sentence past the model's length is cut as in training: its end goes, [SEP] stays.
    long = "The laboratory tested " + ", ".join(f"hull sample {i}" for i in range(60)) + "."
    sentences = [PASSAGES["harbor"][1].split(". ")[1], "The mill closed in 1958.", long]
    enc = tokenizer(
        [question] * 3,
        sentences,
        padding=True,
        truncation="only_second",
        max_length=MAX_TOKENS,
        return_tensors="pt",
    )
    assert enc["input_ids"].shape[1] == MAX_TOKENS
    with torch.inference_mode():
        logit, _, _ = net(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    expected = torch.sigmoid(logit).numpy()
    got = np.array([v.probability for v in Verifier(fp32).verify(question, sentences)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
