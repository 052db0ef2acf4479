"""The answerer registry: built-ins, duplicates, unknown names, plugins through entry points."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from qa.answering.registry import (
    Answerer,
    Registry,
    Resources,
    available_answerers,
    create_answerer,
    register_answerer,
    unregister_answerer,
)
from qa.config import Settings, load_settings
from qa.errors import ConfigError, UnknownAnswererError
from qa.types import Answer, Passage, Turn


class EchoAnswerer:
    """Fake: answers with the text of the first passage."""

    name = "echo"
    description = "Repeats the first passage."

    def answer(
        self, question: str, passages: Sequence[Passage], *, history: Sequence[Turn] = ()
    ) -> Answer:
        text = passages[0].chunk.text if passages else ""
        return Answer(question=question, answer=text, answerer=self.name)


def echo_factory(settings: Settings, resources: Resources) -> EchoAnswerer:
    return EchoAnswerer()


@pytest.fixture
def echo_registered() -> Iterator[str]:
    """Register the fake in the process-wide registry, and remove it afterwards."""
    register_answerer("echo", echo_factory, "Repeats the first passage.")
    yield "echo"
    unregister_answerer("echo")


@pytest.fixture
def settings() -> Settings:
    return load_settings(_env_file=None)


def test_builtins_are_listed_with_descriptions() -> None:
    found = available_answerers()
    assert list(found) == sorted(found)
    assert {"extractive", "openai-chat"} <= set(found)
    assert (
        found["extractive"]
        == "Offline default: quotes the best-matching sentences verbatim (no LLM)."
    )


def test_fixture_registers_a_fake_and_cleans_up(echo_registered: str, settings: Settings) -> None:
    assert available_answerers()["echo"] == "Repeats the first passage."
    answerer = create_answerer("echo", settings, Resources(embedder=None))  # type: ignore[arg-type]
    assert isinstance(answerer, Answerer)
    assert answerer.answer("q?", ()).answer == ""


def test_fake_is_gone_after_the_fixture() -> None:
    assert "echo" not in available_answerers()


def test_unknown_name_lists_the_available_ones(settings: Settings) -> None:
    with pytest.raises(UnknownAnswererError) as info:
        create_answerer("nope", settings, Resources(embedder=None))  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("Unknown answerer 'nope'. Available: ")
    assert "extractive" in message and "openai-chat" in message
    assert message.endswith("Run `qa answerers` to list them.")
    assert info.value.available == sorted(available_answerers())


def test_duplicate_names_are_refused(echo_registered: str) -> None:
    with pytest.raises(ConfigError, match=r"Answerer 'echo' is already registered \(by api\)"):
        register_answerer("echo", echo_factory, "again")
    with pytest.raises(ConfigError, match=r"'extractive' is already registered .*built-in"):
        register_answerer("extractive", echo_factory, "mine")


def test_bad_names_and_factories_are_refused() -> None:
    registry = Registry(plugins=list)
    with pytest.raises(ConfigError, match="Answerer name 'two words' is invalid"):
        registry.register("two words", echo_factory, "x")
    with pytest.raises(ConfigError, match=r"factory for answerer 'x' .* is not callable"):
        registry.register("x", "not a function", "x")  # type: ignore[arg-type]
    with pytest.raises(UnknownAnswererError, match="Unknown answerer 'ghost'"):
        registry.unregister("ghost")


def _install_plugin(root: Path, *, body: str, module: str) -> None:
    """A real installed distribution: a module plus a dist-info folder with entry_points.txt.

    Each test uses its own module name: Python caches imported modules by name.
    """
    (root / f"{module}.py").write_text(body)
    dist = root / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[qa.answerers]\necho = {module}:register\n")


PLUGIN = """
from qa.types import Answer

class Echo:
    name = "echo-plugin"
    description = "Echo from an installed plugin."

    def __init__(self, settings):
        self.top_k = settings.top_k

    def answer(self, question, passages, *, history=()):
        text = f"echo {question} k={self.top_k}"
        return Answer(question=question, answer=text, answerer=self.name)

def register(registry):
    registry.register("echo-plugin", lambda settings, resources: Echo(settings), Echo.description)
"""


def test_plugin_from_an_entry_point_is_listed_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    _install_plugin(tmp_path, body=PLUGIN, module="qa_echo_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    assert registry.available()["echo-plugin"] == "Echo from an installed plugin."
    assert registry.registration("echo-plugin").source == (
        "plugin 'qa_echo_plugin:register' from qa_echo_plugin"
    )
    answerer = registry.create("echo-plugin", settings, Resources(embedder=None))  # type: ignore[arg-type]
    assert answerer.answer("hi?", ()).answer == "echo hi? k=5"
    assert {"extractive", "openai-chat"} <= set(registry.available())


def test_plugin_taking_a_builtin_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = PLUGIN.replace('"echo-plugin", lambda', '"extractive", lambda')
    _install_plugin(tmp_path, body=body, module="qa_clash_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    with pytest.raises(ConfigError, match="'extractive' is already registered"):
        registry.available()
    # The broken state is not cached: the next call fails the same way instead of hiding it.
    with pytest.raises(ConfigError, match="'extractive' is already registered"):
        registry.available()


def test_plugin_that_cannot_import_names_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_plugin(tmp_path, body="import qa_no_such_module\n", module="qa_broken_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"Cannot load answerer plugin 'echo' \(qa_broken_plugin:register\)"
    ):
        Registry().available()


def test_import_the_registry_loads_no_answerer_module() -> None:
    code = (
        "import sys, qa, qa.answering.registry;"
        "builtins = ('qa.answering.extractive', 'qa.answering.openai_chat', 'httpx', 'torch');"
        "print(sorted(m for m in sys.modules if m.startswith(builtins)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
