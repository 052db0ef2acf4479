"""Retrieval: a question -> ranked Passages (dense + BM25 candidates, fusion, optional rerank).

`retriever` (the Retriever and its per-question work), `fusion` (RRF and score blending, pure
functions) and `rerank` (an optional cross-encoder). Reads a Store; knows nothing of answering.
"""
