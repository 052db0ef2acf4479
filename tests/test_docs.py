"""The documentation site builds with `mkdocs build --strict` (a broken link or a missing page
fails), loads nothing from the network, and its reference pages hold every setting and route."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.needs import dependency

DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dependency(find_spec("mkdocs") is not None, "mkdocs: pip install -e '.[docs]'")
    dependency(find_spec("material") is not None, "mkdocs-material: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    pages = sorted(site.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "configuration.html", "http-api.html"}
    for page in pages:
        html = page.read_text(encoding="utf-8")
        tags = re.findall(r"<(?:link|script|img|iframe)\b[^>]*>", html)
        external = [t for t in tags if re.search(r"""(?:src|href)=["']?(?:https?:)?//""", t)]
        assert external == [], f"{page.name} loads {external}"
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page.name


def test_the_configuration_page_lists_every_setting(site: Path) -> None:
    from qa.config import Settings

    html = (site / "configuration.html").read_text(encoding="utf-8")
    missing = [n for n in Settings.model_fields if f"<code>QA_{n.upper()}</code>" not in html]
    assert missing == []
    assert "The folder of documents to index." in html  # the field's own description


def test_the_api_page_lists_every_route_with_an_example(site: Path) -> None:
    import json

    spec = json.loads((site / "openapi.json").read_text(encoding="utf-8"))
    html = (site / "http-api.html").read_text(encoding="utf-8")
    for path, operations in spec["paths"].items():
        for method in operations:
            assert f"{method.upper()} {path}" in html, (method, path)
    text = re.sub(r"<[^>]+>", "", html)  # code blocks are highlighted span by span
    assert "curl -X POST http://127.0.0.1:8000/ask -H 'Content-Type: application/json'" in text


def test_the_included_pages_are_the_repository_files(site: Path) -> None:
    """architecture and performance include ARCHITECTURE.md and bench/README.md, not copies."""
    assert (DOCS / "architecture.md").read_text().strip() == '--8<-- "ARCHITECTURE.md"'
    assert (DOCS / "performance.md").read_text().strip() == '--8<-- "bench/README.md"'
    html = (site / "architecture.html").read_text(encoding="utf-8")
    assert "The data path" in html and "Invariants" in html


def test_every_page_is_in_the_nav_and_every_image_is_shown() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md"))
    assert [p for p in pages if f": {p}\n" not in config] == []
    text = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    images = sorted(p.name for p in (DOCS / "img").iterdir())
    assert images and [i for i in images if f"(img/{i})" not in text] == []
