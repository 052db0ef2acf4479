"""Deterministic synthetic corpora for the scale benchmarks: sentence text and clustered vectors.

Text: documents of English-like sentences (subject, verb, object, modifiers) drawn with a fixed
seed from a Zipf-weighted vocabulary, so word frequencies look like real prose and BM25 has a
realistic vocabulary; chunks of a few sentences (~120 words, what a 200-token chunker yields).

Vectors: unit 384-dim vectors with the statistics of MiniLM embeddings rather than uniform
noise (see `clustered_vectors`): a shared mean direction, an anisotropic spectrum and small
topics. Uniform random vectors are the worst case for HNSW/IVF (no neighbourhood structure) and
well-separated clusters the best; these sit where real corpora do. Pure functions of (n, seed).
Not a benchmark itself: `scale.py` and `pg_store.py` use it.
"""

from __future__ import annotations

import numpy as np

_SUBJECTS = (
    "the committee", "the central bank", "the regulator", "the provincial government",
    "researchers", "the ministry", "local officials", "the study", "the company", "investors",
    "the court", "the city council", "the agency", "analysts", "the university", "patients",
    "the report", "the board", "engineers", "the association",
)  # fmt: skip
_VERBS = (
    "announced", "reviewed", "approved", "rejected", "measured", "published", "proposed",
    "examined", "restricted", "supported", "reported", "funded", "tested", "delayed",
    "described", "compared", "introduced", "questioned", "estimated", "expanded",
)  # fmt: skip
_MODIFIERS = (
    "in the second quarter", "after a long consultation", "for the first time",
    "despite strong objections", "with immediate effect", "under the new framework",
    "according to official data", "in a joint statement", "over the following year",
    "as part of a pilot programme", "in several provinces", "at a press conference",
)  # fmt: skip
_STEMS = (
    "block", "chain", "ledger", "token", "policy", "market", "finance", "credit", "data",
    "health", "cell", "protein", "gene", "trial", "energy", "grid", "carbon", "water", "soil",
    "transport", "rail", "port", "trade", "tax", "law", "court", "school", "vaccine", "virus",
    "cancer", "insulin", "bone", "climate", "forest", "steel", "chip", "software", "network",
    "payment", "bond", "loan", "housing", "labour", "wage", "export", "import", "crop", "fish",
)  # fmt: skip
_SUFFIXES = ("", "s", "ing", "ed", "al", "ity", "ation", "er", "ers", "ic", "ism", "ment")
_CONNECT = ("and", "while", "because", "although", "so that", "whereas")


_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z")
_CODAS = ("", "n", "r", "s", "t", "l", "m", "x", "nd", "st")


def _vocabulary(rng: np.random.Generator, size: int = 30_000) -> tuple[list[str], np.ndarray]:
    """Real stems with suffixes plus pronounceable made-up words, and Zipf probabilities:
    a realistic vocabulary size (BM25's cost depends on how long-tailed the postings are)."""
    syllables = [o + v + c for o in _ONSETS for v in "aeiouy" for c in _CODAS]
    words = {s + x for s in _STEMS for x in _SUFFIXES}
    while len(words) < size:
        words.add("".join(rng.choice(syllables, size=rng.integers(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    weights = 1.0 / np.arange(1, len(ordered) + 1) ** 1.07  # Zipf's law
    return ordered, weights / weights.sum()


def sentences(n: int, *, seed: int = 0) -> list[str]:
    """`n` deterministic sentences (random draws made in bulk: a million chunks in seconds)."""
    rng = np.random.default_rng(seed)
    words, p = _vocabulary(rng)
    nouns = np.searchsorted(np.cumsum(p), rng.random((n, 5)) * 0.999999)
    subj = rng.integers(len(_SUBJECTS), size=n)
    verbs = rng.integers(len(_VERBS), size=(n, 2))
    mods = np.where(rng.random(n) < 0.6, rng.integers(len(_MODIFIERS), size=n), -1)
    joins = np.where(rng.random(n) < 0.5, rng.integers(len(_CONNECT), size=n), -1)
    percent = rng.integers(1, 99, size=n)
    out = []
    for i in range(n):
        a, b, c, d, e = (words[j] for j in nouns[i])
        text = f"{_SUBJECTS[subj[i]]} {_VERBS[verbs[i, 0]]} the {a} {b} of {c}"
        if mods[i] >= 0:
            text += " " + _MODIFIERS[mods[i]]
        if joins[i] >= 0:
            text += f" {_CONNECT[joins[i]]} {d} {e} {_VERBS[verbs[i, 1]]} by {percent[i]} percent"
        out.append(text[0].upper() + text[1:] + ".")
    return out


def chunk_texts(n: int, *, seed: int = 0, sentences_per_chunk: int = 7) -> list[str]:
    """`n` chunk texts of a few sentences each (~100 words, ~130 tokens)."""
    said = sentences(n * sentences_per_chunk, seed=seed)
    k = sentences_per_chunk
    return [" ".join(said[i * k : (i + 1) * k]) for i in range(n)]


def clustered_vectors(
    n: int,
    dim: int = 384,
    *,
    seed: int = 0,
    per_topic: int = 15,
    alpha: float = 0.8,
    mean: float = 0.4,
    spread: float = 0.6,
    batch: int = 100_000,
) -> np.ndarray:
    """(n, dim) float32 unit vectors shaped like MiniLM passage embeddings.

    x = normalise(m + c_topic + spread * w): a common direction m (real embeddings share one,
    random pairs have cosine ~0.1), topic centres c and within-topic variation w drawn from the
    same anisotropic Gaussian (power-law spectrum k^-alpha in a random rotation), ~`per_topic`
    vectors per topic. Tuned so that, at SciFact's size (11k), random-pair cosine, top-1/top-10
    query similarity and nearest-neighbour similarity are close to real MiniLM vectors
    (bench/README.md lists both).
    """
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    scale = np.arange(1, dim + 1, dtype=np.float32) ** (-alpha / 2)
    scale /= np.sqrt((scale**2).sum())
    common = rng.standard_normal(dim).astype(np.float32)
    common *= mean / np.linalg.norm(common)
    topics = max(1, n // per_topic)
    centres = (rng.standard_normal((topics, dim)).astype(np.float32) * scale) @ rotation
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, batch):  # bounded temporaries at 1M rows
        m = min(batch, n - lo)
        local = (rng.standard_normal((m, dim)).astype(np.float32) * scale) @ rotation
        block = common + centres[rng.integers(topics, size=m)] + spread * local
        out[lo : lo + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries_near(vectors: np.ndarray, m: int, *, seed: int = 1, noise: float = 1.1) -> np.ndarray:
    """`m` query vectors: noisy copies of random indexed vectors (top-1 cosine ~0.65, as a real
    question has with its best passage)."""
    rng = np.random.default_rng(seed)
    base = vectors[rng.choice(len(vectors), size=m, replace=False)]
    q = base + noise * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(base.shape[1])
    return np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype=np.float32)
