"""The answer step: the `Answerer` protocol and the name -> factory registry.

Built-in answerers and third-party plugins register the same way. A plugin is an object
`register(registry)` that calls `registry.register(name, factory, description)` once per
answerer it provides; a factory is `factory(settings, resources) -> Answerer`. Third-party
packages expose it through the entry-point group `qa.answerers`:

    # pyproject.toml of a plugin package
    [project.entry-points."qa.answerers"]
    my-answerer = "my_package.qa_plugin:register"

    # my_package/qa_plugin.py
    def register(registry):
        registry.register("echo", EchoAnswerer.from_settings, "Repeats the best passage.")

The built-ins are loaded through that same path, from the entry-point strings in `BUILTINS`,
the first time the registry is used (not on `import qa`, so no answerer's dependencies are
imported before they are needed). Duplicate names are refused with ConfigError; an unknown
name raises UnknownAnswererError listing what exists.

    >>> sorted(available_answerers())
    ['extractive', 'openai-chat']
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from qa.errors import ConfigError, UnknownAnswererError

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.embedding.models import Embedder
    from qa.types import Answer, Document, Passage, Turn

ENTRY_POINT_GROUP = "qa.answerers"
BUILTINS = (
    EntryPoint("extractive", "qa.answering.extractive.answerer:register", ENTRY_POINT_GROUP),
    EntryPoint("openai-chat", "qa.answering.openai_chat:register", ENTRY_POINT_GROUP),
)


@runtime_checkable
class Answerer(Protocol):
    """Turns a question and its ranked passages into a cited Answer.

    An answerer that sets `packs_context = True` is handed as many ranked passages as fit the
    token budget and also receives it as `context_tokens=` (a per-request override included);
    the others get the top_k passages. One that mostly waits on a backend (an LLM server) sets
    `cpu_bound = False`, so `qa serve` runs its answer step off the one-per-core workers.
    One that always gives the same Answer to the same question and passages sets
    `deterministic = True`, so the pipeline reuses it when the question comes again. One that
    embeds texts of the chunks it could embed before any question (the extractive answerer:
    their sentences) defines `warm_texts(chunks, *, limit) -> list[str]` and
    `remember(texts, vectors)`; `qa serve` makes those vectors in the background
    (qa/server/warmup.py).
    """

    name: str
    description: str

    def answer(
        self, question: str, passages: Sequence[Passage], *, history: Sequence[Turn] = ()
    ) -> Answer:
        """The answer, citing passages by their rank as `[n]` (or abstaining)."""
        ...


@runtime_checkable
class StreamingAnswerer(Answerer, Protocol):
    """An Answerer that can also yield its text as it is produced."""

    def stream(
        self, question: str, passages: Sequence[Passage], *, history: Sequence[Turn] = ()
    ) -> Iterator[str | Answer]:
        """Text deltas, then the final Answer as the last item."""
        ...


@dataclass(frozen=True)
class Resources:
    """Shared, already-loaded things an answerer may use instead of loading its own.

    `documents` looks a source document up by id (the store's `document`), so an answerer can
    quote past a chunk's edges; None when there is no store behind the passages.
    """

    embedder: Embedder
    documents: Callable[[str], Document] | None = None


AnswererFactory = Callable[["Settings", Resources], Answerer]


@dataclass(frozen=True)
class Registration:
    """One registered answerer: its factory, its one-line description, and who registered it."""

    name: str
    factory: AnswererFactory
    description: str
    source: str


class Registry:
    """Name -> factory table; built-ins and entry points are loaded on first use."""

    def __init__(self, plugins: Callable[[], Sequence[EntryPoint]] | None = None) -> None:
        self._entries: dict[str, Registration] = {}
        self._plugins = plugins or _installed_plugins
        self._loaded = False
        self._loading_source = "api"
        self._lock = threading.RLock()

    def register(self, name: str, factory: AnswererFactory, description: str) -> None:
        """Add an answerer; ConfigError if the name is taken or malformed."""
        with self._lock:
            self._ensure_loaded()
            self._add(name, factory, description, self._loading_source)

    def unregister(self, name: str) -> None:
        """Remove an answerer (for tests and plugin reloads); unknown names are an error."""
        with self._lock:
            self._ensure_loaded()
            if name not in self._entries:
                raise UnknownAnswererError(name, self._entries)
            del self._entries[name]

    def available(self) -> dict[str, str]:
        """Every registered name with its description, sorted by name."""
        with self._lock:
            self._ensure_loaded()
            return {n: self._entries[n].description for n in sorted(self._entries)}

    def registration(self, name: str) -> Registration:
        """The registration under `name`, or UnknownAnswererError listing the known names."""
        with self._lock:
            self._ensure_loaded()
            if name not in self._entries:
                raise UnknownAnswererError(name, self._entries)
            return self._entries[name]

    def create(self, name: str, settings: Settings, resources: Resources) -> Answerer:
        """A new answerer from the factory registered under `name`."""
        return self.registration(name).factory(settings, resources)

    def _add(self, name: str, factory: AnswererFactory, description: str, source: str) -> None:
        if not name or name != name.strip() or any(c.isspace() for c in name):
            raise ConfigError(
                f"Answerer name {name!r} is invalid: use a non-empty word like 'x-y'."
            )
        if not callable(factory):
            raise ConfigError(f"The factory for answerer {name!r} ({source}) is not callable.")
        if name in self._entries:
            taken = self._entries[name].source
            raise ConfigError(
                f"Answerer {name!r} is already registered (by {taken}); {source} cannot "
                "register it again. Pick another name, or uninstall one of the two plugins."
            )
        one_line = " ".join(description.split())
        self._entries[name] = Registration(name, factory, one_line, source)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        # Set first: plugins call register(), which comes back here.
        self._loaded = True
        try:
            for ep in (*BUILTINS, *self._plugins()):
                self._load(ep)
        except BaseException:
            # Half a registry would hide the broken plugin on the next call: start over then.
            self._entries.clear()
            self._loaded = False
            raise

    def _load(self, ep: EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        source = f"plugin {ep.value!r}" + (f" from {dist.name}" if dist is not None else "")
        if ep in BUILTINS:
            source = f"built-in {ep.value!r}"
        try:
            plugin = ep.load()
        except ImportError as exc:
            raise ConfigError(
                f"Cannot load answerer plugin {ep.name!r} ({ep.value}): {exc}. Reinstall or "
                "uninstall the package that provides it."
            ) from exc
        if not callable(plugin):
            raise ConfigError(
                f"Answerer plugin {ep.name!r} ({ep.value}) is not callable: an entry point in "
                f"{ENTRY_POINT_GROUP!r} must name a function register(registry)."
            )
        previous = self._loading_source
        self._loading_source = source
        try:
            plugin(self)
        finally:
            self._loading_source = previous


def _installed_plugins() -> Sequence[EntryPoint]:
    """Entry points of installed distributions in the group, minus our own built-ins."""
    builtin_values = {ep.value for ep in BUILTINS}
    found = entry_points(group=ENTRY_POINT_GROUP)
    seen: set[tuple[str, str]] = set()
    plugins: list[EntryPoint] = []
    for ep in found:
        # The same distribution can be visible twice on sys.path (editable + site-packages).
        if ep.value in builtin_values or (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        plugins.append(ep)
    return plugins


_REGISTRY = Registry()


def default_registry() -> Registry:
    """The process-wide registry that the module-level functions use."""
    return _REGISTRY


def register_answerer(name: str, factory: AnswererFactory, description: str) -> None:
    """Register an answerer by name; ConfigError when the name is already taken."""
    _REGISTRY.register(name, factory, description)


def unregister_answerer(name: str) -> None:
    """Remove a registered answerer (tests use it to clean up after registering a fake)."""
    _REGISTRY.unregister(name)


def available_answerers() -> dict[str, str]:
    """Name -> one-line description of every registered answerer, sorted by name."""
    return _REGISTRY.available()


def create_answerer(name: str, settings: Settings, resources: Resources) -> Answerer:
    """Build the answerer registered under `name` (UnknownAnswererError lists the known ones)."""
    return _REGISTRY.create(name, settings, resources)


__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "Answerer",
    "AnswererFactory",
    "Registration",
    "Registry",
    "Resources",
    "StreamingAnswerer",
    "available_answerers",
    "create_answerer",
    "default_registry",
    "register_answerer",
    "unregister_answerer",
]
