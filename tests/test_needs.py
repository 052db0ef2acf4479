"""The suite runs on any machine from a clone alone: missing needs, and no outside paths."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.needs import cpu_feature, dependency, in_ci


@pytest.mark.parametrize("ci", ["true", "TRUE", "1", "yes", "Yes", " true\n"])
def test_a_missing_dependency_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    assert in_ci()  # else the dependency below skips, and a skip is no failure
    with pytest.raises(pytest.fail.Exception, match=r"missing dependency under CI: chromium \("):
        dependency(False, "chromium (apt-get install chromium)")
    dependency(True, "chromium")  # present: nothing happens


def _ci(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)


@pytest.mark.parametrize("ci", [None, "", "false", "0", "no", "truthy"])
def test_a_missing_dependency_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    _ci(monkeypatch, ci)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match=r"missing dependency: chromium"):
        dependency(False, "chromium")


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_missing_cpu_feature_skips_even_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    _ci(monkeypatch, ci)
    with pytest.raises(pytest.skip.Exception, match=r"lacks native bfloat16; no install step"):
        cpu_feature(False, "native bfloat16")
    cpu_feature(True, "native bfloat16")


# Paths that exist only on the machine a test was written on: the sibling ../shared folder of the
# developers' workspace, their absolute checkout, a home folder.
OUTSIDE = re.compile(
    r"ROOT\.parent|\.\./shared|[\"']shared[\"']\s*/|/work/|/home/|/root/|expanduser\(|Path\.home\("
)


def test_no_test_reads_a_path_outside_the_repository() -> None:
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == "test_needs.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "tests must run from the repository alone (use tests/data/):\n" + "\n".join(
        found
    )
