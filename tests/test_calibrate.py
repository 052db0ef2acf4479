"""`qa calibrate`: fit the abstention threshold on labelled questions, save it, use it, keep it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qa.cli import main
from qa.config import Settings, load_settings
from qa.evaluation.calibrate import GRID, Tradeoff, choose, tradeoffs
from qa.pipeline import Pipeline
from qa.stores.calibration import read_calibration
from qa.stores.folder import CALIBRATION_FILE
from tests.conftest import DEMO_CORPUS, DEMO_QUESTIONS


def test_tradeoff_table_and_choice() -> None:
    confidence = [0.9, 0.8, 0.35, 0.2, 0.1, 0.0]
    unanswerable = [False, False, False, True, True, True]
    rows = tradeoffs(confidence, unanswerable)
    assert [r.threshold for r in rows] == list(GRID)
    at = {r.threshold: r for r in rows}
    assert at[0.25] == Tradeoff(0.25, 1.0, 0.0, 1.0)
    assert at[0.4] == Tradeoff(0.4, 1.0, pytest.approx(1 / 3), pytest.approx(6 / 7))
    assert choose(rows, 0.05).threshold == 0.25  # the lowest threshold with the best F1
    assert choose(rows, 0.0).f1 == 1.0


def test_calibrate_round_trip(demo_settings: Settings, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    index = tmp_path / "index"
    shutil.copytree(demo_settings.index_dir, index)
    records = [json.loads(line) for line in DEMO_QUESTIONS.open()]
    answerable = [r for r in records if r["answerable"] and "history" not in r][:6]
    unanswerable = [r for r in records if not r["answerable"]][:6]
    questions = tmp_path / "mine.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in answerable + unanswerable))

    assert (
        main(["calibrate", str(questions), "--index", str(index), "--corpus", str(DEMO_CORPUS)])
        == 0
    )
    out = capsys.readouterr().out
    assert "abstention trade-off on 12 questions" in out and "saved abstain_threshold" in out
    saved = read_calibration(index)
    assert saved is not None and saved["n_questions"] == 12 and saved["n_unanswerable"] == 6
    threshold = saved["abstain_threshold"]
    assert threshold in GRID and len(saved["table"]) == len(GRID)

    # `qa ask` / `qa serve` load the pipeline this way: the saved threshold applies ...
    settings = load_settings(index_dir=index, corpus_dir=DEMO_CORPUS, _env_file=None)
    pipeline = Pipeline.load(settings)
    assert pipeline.settings.abstain_threshold == threshold
    assert getattr(pipeline.answerer(), "abstain_threshold", None) == threshold
    # ... unless the user sets one explicitly.
    explicit = load_settings(
        index_dir=index, corpus_dir=DEMO_CORPUS, abstain_threshold=0.99, _env_file=None
    )
    assert Pipeline.load(explicit).settings.abstain_threshold == 0.99

    # A rebuilt index folder keeps the calibration.
    before = (index / CALIBRATION_FILE).read_text()
    assert main(["index", "--index", str(index), "--corpus", str(DEMO_CORPUS), "--rebuild"]) == 0
    assert (index / CALIBRATION_FILE).read_text() == before


def test_calibrate_needs_both_kinds_of_question(
    demo_settings: Settings, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    questions = tmp_path / "only.jsonl"
    questions.write_text(json.dumps({"id": "1", "question": "What?", "answers": ["x"]}) + "\n")
    code = main(["calibrate", str(questions), "--index", str(demo_settings.index_dir)])
    assert code != 0
    assert "needs both answerable and unanswerable questions" in capsys.readouterr().err
