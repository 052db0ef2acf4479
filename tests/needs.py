"""What a test needs from the machine, and what happens when it is missing.

Two kinds, kept apart on purpose:

- `dependency`: something an install step provides (a Python package, Debian's chromium, the
  llama.cpp server, a system user). `scripts/test.sh` installs all of them, so under CI=true a
  missing one is a broken install and fails the test; elsewhere the test skips and says how to
  install it.
- `cpu_feature`: something no install step can provide (a CPU flag such as avx512_bf16). CI runs
  on whatever machine it is given, so the test skips with its reason everywhere, CI included.

Skip reasons are printed in pytest's summary (`-ra` in pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True under CI (CI=1, true or yes, any case), where a missing installable dependency must
    fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def dependency(present: bool, what: str) -> None:
    """Skip locally, fail under CI, when an installable dependency is missing.

    `what` names the dependency and how to install it.
    """
    __tracebackhide__ = True  # report the test that needs it, not this line
    if present:
        return
    if in_ci():
        pytest.fail(f"missing dependency under CI: {what}", pytrace=False)
    pytest.skip(f"missing dependency: {what}")


def cpu_feature(present: bool, what: str) -> None:
    """Skip, in CI too, when this machine's CPU lacks a feature the test needs."""
    __tracebackhide__ = True
    if present:
        return
    model = _cpu_model()
    pytest.skip(f"this CPU ({model}) lacks {what}; no install step can add it")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return "unknown CPU"
