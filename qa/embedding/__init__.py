"""Embedding: text -> normalised vectors, and the cache that spares re-embedding text seen before.

`models` (the Embedder protocol, the torch backend, `get_embedder`), `backends` (backend names,
which ones share a vector space, what `auto` picks), `export` (the model exported once to ONNX,
cached and checked), `runtime` (that file on ONNX Runtime or OpenVINO) and `cache` (vectors by
text hash beside the index, so a rebuild embeds only new text).
"""
