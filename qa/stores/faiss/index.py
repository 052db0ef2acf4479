"""The FAISS index of a folder: which kind for how many vectors, how it is built and tuned.

`flat` (exact search) until `auto_index_threshold` vectors, then HNSW over 8-bit codes; IVF on
request. Approximate kinds train on a bounded sample spread over the whole matrix, and
search-time knobs (efSearch, nprobe) come from the settings at load (bench/scale.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.config import Settings

if TYPE_CHECKING:
    import faiss


def resolve_index_type(n: int, settings: Settings) -> str:
    """The FAISS index kind used for `n` vectors: "auto" means exact search until the threshold."""
    if settings.index_type == "auto":
        return "hnsw" if n > settings.auto_index_threshold else "flat"
    return settings.index_type


def build_faiss(vectors: np.ndarray, settings: Settings) -> tuple[faiss.Index, dict[str, Any]]:
    """The FAISS index the settings ask for, and a description of it for the manifest."""
    import faiss

    n, dim = vectors.shape
    kind = resolve_index_type(n, settings)
    index: faiss.Index
    if kind == "hnsw":
        # 8-bit codes: a quarter of the memory of float32 for the same recall@10 (0.99 at 1M
        # in bench/scale.py); exact vectors stay in vectors.npy for rescoring.
        hnsw = faiss.IndexHNSWSQ(
            dim,
            faiss.ScalarQuantizer.QT_8bit,  # type: ignore[arg-type]  # an enum int in FAISS
            settings.hnsw_m,
            faiss.METRIC_INNER_PRODUCT,
        )
        hnsw.hnsw.efConstruction = max(40, 2 * settings.hnsw_m)
        if n:
            hnsw.train(training_sample(vectors, 100_000))
        index = hnsw
        params: dict[str, Any] = {
            "M": settings.hnsw_m,
            "efConstruction": hnsw.hnsw.efConstruction,
            "codes": "sq8",
        }
    elif kind == "ivf":
        # ~4 sqrt(n) lists, with at least 39 training points per list (FAISS's own minimum).
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # k-means on 64 points per list converges as well as on all of them, in far less time.
        index.train(training_sample(vectors, 64 * nlist))
        params = {"nlist": nlist}
    else:
        index = faiss.IndexFlatIP(dim)
        params = {}
    if n:
        index.add(vectors)
    return index, {"type": kind, "params": params, "requested": settings.index_type}


def training_sample(vectors: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` rows, spread over the whole matrix (same rows on every build)."""
    n = vectors.shape[0]
    if n <= limit:
        return vectors
    rows = np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))
    return np.ascontiguousarray(vectors[rows])


def tune(index: faiss.Index, settings: Settings) -> None:
    """Apply the search-time knobs of the settings (they may differ from build time)."""
    import faiss

    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = settings.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = settings.ivf_nprobe
