"""Stores: where chunks, their vectors and their keyword index live once built.

`base` (the Store protocol and `open_store`), `folder` (the self-describing manifest and the
atomic folder swap), `faiss/` (the index folder on one machine: FAISS + SQLite + BM25) and
`postgres/` (PostgreSQL + pgvector shared by many servers). Nothing here knows about retrieval,
answering or HTTP.
"""
