"""The default store: one index folder (FAISS vectors, SQLite chunks, a bm25s keyword index)."""
