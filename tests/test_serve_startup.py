"""`qa serve` start-up: with the ONNX backend and its export cached, serving imports neither torch
nor sentence-transformers (they cost ~9 s of start-up, bench/README.md); `needs_torch` tells
the cases that do need torch apart without importing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.config import Settings, load_settings
from qa.embedding.backends import NEEDS, importable

from .conftest import DEMO_QUESTIONS, ROOT
from .needs import dependency

# The serving path of `qa serve` (qa.server.run.serve) in a fresh interpreter, over real HTTP:
# main-thread imports, the app, the loader thread, one /ask; then which heavy modules loaded.
SERVE = """
import json, sys
import httpx
from qa.config import load_settings
from qa.server.app import create_app
from qa.server.run import import_native_libraries, load_in_background
from tests.server_utils import LiveServer, wait_for

settings = load_settings(**json.loads(sys.argv[1]), _env_file=None)
import_native_libraries(settings)
app = create_app(settings)
load_in_background(app, settings, build_if_missing=False)
with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
    wait_for(lambda: client.get("/readyz").status_code == 200, what="/readyz", timeout=120)
    ready = client.get("/readyz").json()
    answer = client.post("/ask", json={"question": sys.argv[2]})
    answer.raise_for_status()
print(json.dumps({
    "backend": ready["embedding_backend"],
    "reason": ready["embedding_backend_reason"],
    "passages": len(answer.json()["passages"]),
    "heavy": [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules],
}))
"""


@pytest.fixture(scope="module")
def onnx_settings(demo_settings: Settings) -> Settings:
    """The demo index with the ONNX export cached, as after `qa index`."""
    from qa.embedding.models import export_dir_for
    from qa.embedding.runtime import ExportedEmbedder

    module, install = NEEDS["onnx"]
    dependency(importable(module), f"{module} for embedding_backend onnx (`{install}`)")
    embedder = ExportedEmbedder(
        demo_settings.embedding_model, backend="onnx", folder=export_dir_for(demo_settings)
    )
    # No CPU-feature skip here: onnxruntime picks its float32 kernels for the CPU it finds
    # (SSE2, the x86-64 baseline, up to AVX-512), so this model needs no instruction set beyond
    # what importing onnxruntime already needed. An error here is a broken export or runtime.
    embedder.dim  # noqa: B018 - exports (with torch, here) and loads it in onnxruntime
    return demo_settings


def first_question() -> str:
    with DEMO_QUESTIONS.open() as f:
        return str(json.loads(f.readline())["question"])


@pytest.mark.parametrize("backend", ["onnx", "auto"])
def test_serving_onnx_with_a_cached_export_imports_no_torch(
    onnx_settings: Settings, backend: str
) -> None:
    options = {
        "corpus_dir": str(onnx_settings.corpus_dir),
        "index_dir": str(onnx_settings.index_dir),
        "embedding_backend": backend,
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(options), first_question()],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["backend"] == "onnx"
    assert result["reason"].startswith("auto: " if backend == "auto" else "set by")
    assert result["passages"] > 0
    assert result["heavy"] == []


def test_needs_torch_only_for_torch_a_reranker_or_an_export_to_make(
    onnx_settings: Settings, tmp_path: Path
) -> None:
    from qa.embedding.models import needs_torch

    onnx = onnx_settings.model_copy(update={"embedding_backend": "onnx"})
    assert not needs_torch(onnx)
    assert not needs_torch(onnx_settings)  # auto: onnx is installed and its export cached
    assert needs_torch(onnx_settings.model_copy(update={"embedding_backend": "torch"}))
    assert needs_torch(onnx.model_copy(update={"reranker": "some/cross-encoder"}))
    # No export in this model folder yet: the first start exports with torch.
    fresh = load_settings(
        index_dir=tmp_path / "index",
        embedding_backend="onnx",
        model_cache_dir=tmp_path / "models",
        _env_file=None,
    )
    assert needs_torch(fresh)
    # An int8 file is its own export.
    assert needs_torch(onnx.model_copy(update={"embedding_backend": "onnx-int8"}))
