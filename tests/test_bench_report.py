"""bench/README.md is made from bench/out/*.json by bench/report.py, and reads as current results,
not a diary: the committed tables match the committed result files, every result file says how
to rerun it and on what machine and load, and every benchmark has its section."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
README = BENCH / "README.md"


def load_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def entry_points() -> list[str]:
    """The benchmarks: bench/*.py that run as a script (the rest are shared modules)."""
    return sorted(
        p.stem for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()
    )


def test_readme_tables_are_the_result_files() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "report.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_every_result_file_says_how_to_rerun_it_and_where_it_ran() -> None:
    files = sorted((BENCH / "out").glob("*.json"))
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["benchmark"] == path.stem, path
        assert doc["command"].startswith(".venv/bin/python bench/"), path
        assert (BENCH / doc["command"].split()[1].removeprefix("bench/")).is_file(), path
        assert set(doc["machine"]) >= {"cpu", "cores", "flags"}, path
        assert len(doc["load"]["before"]) == 3 and len(doc["load"]["after"]) == 3, path
        assert isinstance(doc["results"], dict), path


def test_the_readme_is_no_diary() -> None:
    text = README.read_text()
    assert not re.search(r"(?i)\b(issue|session)s? #?\d+", text)
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "a date: the git log keeps history"
    assert not re.search(r"\b\d\d:\d\d(-\d\d:\d\d)? UTC\b", text), "a time of day"


def test_a_few_named_benchmarks_each_with_its_section() -> None:
    names = entry_points()
    assert len(names) <= 12, names
    text = README.read_text()
    for name in names:
        assert f"`bench/{name}.py`" in text, f"bench/{name}.py is not in the README's list"
        if name != "report":
            assert f"<!-- results: {name} -->" in text, f"no results section for {name}"


def test_a_result_becomes_its_table(tmp_path: Path) -> None:
    report = load_report()
    out = tmp_path / "out"
    out.mkdir()
    doc = {
        "benchmark": "toy",
        "command": ".venv/bin/python bench/toy.py --n 3",
        "machine": {"cpu": "Test CPU", "cores": 2, "flags": ["avx2"], "memory_gb": 8.0},
        "load": {"before": [0.5, 0.4, 0.3], "after": [1.25, 0.5, 0.3]},
        "seconds": 12.0,
        "results": {
            "tables": [{"title": "Toy", "columns": ["a", "b"], "rows": [[1, None], ["x|y", 20000]]}]
        },
    }
    (out / "toy.json").write_text(json.dumps(doc))
    readme = "# Bench\n\nHand text.\n<!-- results: toy -->\nold\n<!-- end results: toy -->\nEnd.\n"
    assert report.render(readme, out) == (
        "# Bench\n\nHand text.\n<!-- results: toy -->\n"
        "`.venv/bin/python bench/toy.py --n 3`\n\n"
        "Machine: Test CPU, 2 cores (avx2), 8.0 GB; load average 0.50 before, 1.25 after, 12 s.\n\n"
        "**Toy**\n\n| a | b |\n| --- | --- |\n| 1 | - |\n| x\\|y | 20,000 |\n"
        "<!-- end results: toy -->\nEnd.\n"
    )
    path = tmp_path / "README.md"
    path.write_text(readme)
    assert report.main(["--check", "--readme", str(path), "--out", str(out)]) == 1
    assert report.main(["--readme", str(path), "--out", str(out)]) == 0
    assert report.main(["--check", "--readme", str(path), "--out", str(out)]) == 0


def test_a_section_without_a_result_says_how_to_make_one(tmp_path: Path) -> None:
    report = load_report()
    readme = "<!-- results: scale -->\n<!-- end results: scale -->\n"
    assert report.render(readme, tmp_path) == (
        "<!-- results: scale -->\n"
        "No result yet: run `.venv/bin/python bench/scale.py`.\n"
        "<!-- end results: scale -->\n"
    )


def test_a_result_without_a_section_is_refused(tmp_path: Path) -> None:
    report = load_report()
    (tmp_path / "orphan.json").write_text(json.dumps({"benchmark": "orphan", "results": {}}))
    with pytest.raises(report.ReportError, match=r"orphan\.json.*<!-- results: NAME -->"):
        report.render("# Bench\n", tmp_path)
