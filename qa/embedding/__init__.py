"""Embedding: text -> normalised vectors, and the cache that spares re-embedding text seen before.

`models` (the Embedder protocol and the sentence-transformers backends) and `cache` (vectors by
text hash beside the index, so a rebuild embeds only new text).
"""
