"""Ingest: read a corpus folder into Documents, cut them into Chunks, and build an index from them.

`readers` (one parser per file format; `clean` tidies PDF and HTML text, `docx` reads Word
files), `chunking` (token-bounded chunks with exact offsets), `tokens` (offline tiktoken
encodings) and `build` (read -> chunk -> embed -> hand to the store).
"""
