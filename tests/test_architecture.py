"""The package's shape: no import cycles, and lower layers never import higher ones.

Every `import` in qa/ counts, at module level or inside a function (a lazy import is still a
dependency). The layers follow the data path (see ARCHITECTURE.md); a module may import its own
subpackage and any lower layer, never a higher one or a sibling on the same layer.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

QA = Path(__file__).resolve().parent.parent / "qa"

# Lowest first. Keys are module-name prefixes; the longest matching prefix wins.
LAYERS = {
    "qa": 0,
    "qa.types": 0,
    "qa.errors": 0,
    "qa.config": 0,
    "qa.resources": 0,
    "qa.recent": 0,
    "qa.embedding": 1,
    "qa.stores": 2,
    "qa.ingest": 3,
    "qa.retrieval": 4,
    "qa.answering": 5,
    "qa.pipeline": 6,
    "qa.evaluation": 7,
    "qa.server": 7,
    "qa.training": 7,
    "qa.cli": 8,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(QA.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(QA.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The qa modules `path` imports (a `from pkg import sub` counts as importing pkg.sub)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "qa")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "qa":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found.update(subs or {target})
    return {m for m in found if m in known and m != name}


@functools.cache
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, name, set(mods)) for name, path in mods.items()}


def layer(name: str) -> tuple[str, int]:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return prefix, LAYERS[prefix]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_of_every_kind() -> None:
    edges = graph()
    assert "qa.errors" in edges["qa.config"]  # module level
    assert "qa.ingest.build" in edges["qa.pipeline"]  # inside a function
    assert len(edges) > 40


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if m not in LAYERS and m.count(".") < 1] == []


# qa/__init__.py is left out: it is the public facade, re-exporting names from every layer lazily.
@pytest.mark.parametrize("name", sorted(m for m in modules() if m != "qa"))
def test_lower_layers_never_import_higher_ones(name: str) -> None:
    home, rank = layer(name)
    wrong = []
    for target in sorted(graph()[name]):
        where, target_rank = layer(target)
        if target_rank > rank or (target_rank == rank and where != home and rank > 0):
            wrong.append(f"{target} ({where}, layer {target_rank})")
    assert wrong == [], f"{name} ({home}, layer {rank}) imports a higher layer: {wrong}"


def test_public_names_import_from_the_top_without_heavy_modules() -> None:
    code = (
        "import sys, qa\n"
        "heavy = {'torch', 'faiss', 'sentence_transformers', 'fastapi', 'numpy'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "from qa import Pipeline, Settings, Answer, Citation, Passage, QAError, Answerer\n"
        "from qa.pipeline import Pipeline as P\n"
        "assert Pipeline is P and Answerer.__name__ == 'Answerer'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=QA.parent, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    import qa

    assert sorted(qa.__all__) == sorted(qa._EXPORTS)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = qa.Nope  # type: ignore[attr-defined]
