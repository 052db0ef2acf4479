"""Settings: the one place that reads the environment (prefix `QA_`, or a `.env` file).

The `.env` file is the working directory's unless `QA_ENV_FILE` names another; set empty, no
file is read (the test suite sets it empty: a developer's `.env` cannot reach a test).

Built once at the edge (CLI, server start-up) and passed down as an object. CLI options
mirror these fields one to one (`--chunk-tokens` <-> `QA_CHUNK_TOKENS` <-> `chunk_tokens`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qa.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count): what the
    settings that say "0 = one per core" and the server's request workers count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every knob of `qa`, with the defaults of the offline demo."""

    model_config = SettingsConfigDict(
        env_prefix="QA_",
        env_file=".env",
        extra="forbid",
        frozen=True,
        # The string under a field is its description: `qa <command> --help` and the
        # configuration page (docs/configuration.md) show it.
        use_attribute_docstrings=True,
    )

    def __init__(self, **values: Any) -> None:
        # An explicit `_env_file` (None included) wins over QA_ENV_FILE.
        values.setdefault("_env_file", env_file())
        super().__init__(**values)

    # Where things are.
    corpus_dir: Path = Path("corpus")
    """The folder of documents to index."""
    index_dir: Path = Path("index")
    """The index folder (with the postgres store: its caches)."""

    # Chunking (token counts in the `encoding` below).
    encoding: str = "cl100k_base"
    """The tiktoken encoding chunk sizes are counted in."""
    chunk_tokens: int = Field(200, ge=16, le=8192)
    """Tokens per chunk."""
    chunk_overlap: int = Field(30, ge=0)
    """Tokens shared by neighbouring chunks."""

    # Scans (images, PDF pages without a text layer) read by OCR (the extra `ocr`): PDF pages
    # rendered at ocr_dpi; an image over ocr_max_pixels or a file over ocr_max_pages pages is
    # refused from its header, before anything is decoded (qa/ingest/ocr.py).
    ocr_dpi: int = Field(200, ge=72, le=600)
    """Resolution scanned PDF pages are rendered at for OCR."""
    ocr_max_pixels: int = Field(60_000_000, ge=1_000_000)
    """Largest image (width x height) OCR reads."""
    ocr_max_pages: int = Field(1000, ge=1)
    """Most pages one file may have for OCR (TIFF frames, scanned PDF pages)."""

    # Embeddings.
    embedding_model: str = DEFAULT_MODEL
    """The sentence-transformers model that embeds text."""
    embedding_batch_size: int = Field(32, ge=1, le=4096)
    """Chunks embedded per batch."""
    device: str = "cpu"
    """The torch device of the embedding model (cpu, cuda)."""
    # How the model runs (bench/README.md measures each): auto = the fastest that runs here and
    # matches torch fp32 (qa/embedding/backends.py); torch fp32/bf16, ONNX (fp32, int8), OpenVINO.
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino"] = "auto"
    """How the model runs; auto = the fastest that matches torch."""
    embedding_dtype: Literal["float32", "bfloat16"] = "float32"
    """The torch backend's number format."""
    embedding_processes: int = Field(1, ge=1, le=64)
    """Processes embedding documents side by side (torch backend)."""
    # Exported backends: encoder sessions embedding document batches side by side, one thread
    # each (0 = one per CPU core this process may use). Questions always use one.
    embedding_workers: int = Field(0, ge=0, le=64)
    """ONNX/OpenVINO sessions embedding documents; 0 = one per core."""
    # Vectors cached by (model, text hash), so re-indexing re-embeds only new text.
    embedding_cache: bool = True
    """Reuse the vectors of unchanged text when re-indexing."""
    # Exported encoder files (ONNX) of the onnx/openvino backends. Unset: one folder per user,
    # $XDG_CACHE_HOME/qa/models (else ~/.cache/qa/models), shared by every index: an export
    # depends on the model and package versions only, and makes one costs ~20 s and torch.
    model_cache_dir: Path | None = None
    """Where exported encoder files live; unset = ~/.cache/qa/models."""

    # Where the index lives: the FAISS folder (one machine) or PostgreSQL + pgvector (shared).
    store: Literal["faiss", "postgres"] = "faiss"
    """faiss (a folder) or postgres (PostgreSQL + pgvector)."""
    database_url: SecretStr | None = None
    """PostgreSQL URL of the postgres store."""
    database_replica_url: SecretStr | None = None
    """A read replica the server searches (writes: database_url)."""
    # Postgres schema holding the tables (one database can hold several indexes).
    pg_schema: str = "qa"
    """The Postgres schema of the index (several per database)."""
    # Keyword search of the Postgres store: app-side BM25 (qa.stores.bm25, saved in the database)
    # or Postgres full-text ranking (ts_rank_cd); bench/README.md says how to compare them.
    pg_keyword: Literal["bm25", "fulltext"] = "bm25"
    """Keyword search in Postgres: app-side BM25 or full-text."""
    # Connections each process keeps open to the database (one per concurrent search).
    pg_pool_size: int = Field(8, ge=1, le=256)
    """Database connections each process keeps open."""

    # Vector index: "auto" picks exact search for small corpora, HNSW past the threshold.
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    """Vector index; auto = exact, HNSW past auto_index_threshold."""
    auto_index_threshold: int = Field(100_000, ge=1)
    """Chunks from which index_type auto builds HNSW."""
    hnsw_m: int = Field(32, ge=4, le=256)
    """HNSW graph degree."""
    # 256 keeps recall@10 near exact search's at 1M chunks with searches of about a
    # millisecond; lower trades recall for speed (bench/scale.py measures both).
    hnsw_ef_search: int = Field(256, ge=1)
    """HNSW candidates per search (higher: better recall, slower)."""
    ivf_nprobe: int = Field(32, ge=1)
    """IVF lists searched per question."""

    # Retrieval: dense, BM25 or both fused; candidates per list before fusion and rescoring.
    retrieval: Literal["dense", "bm25", "hybrid"] = "hybrid"
    """dense (embeddings), bm25 (keywords) or hybrid (both, fused)."""
    fusion: Literal["rrf", "convex"] = "convex"
    """How hybrid merges the two lists: blended scores (convex) or ranks (rrf)."""
    fusion_weight: float = Field(0.7, ge=0.0, le=1.0)
    """Weight of the dense score in convex fusion."""
    rrf_k: int = Field(60, ge=1)
    """The k of reciprocal-rank fusion."""
    candidates: int = Field(50, ge=1, le=2000)
    """Candidates per list before fusion and rescoring."""
    rescore: bool = True
    """Hybrid: move the question towards the best candidates and rescore (no model call)."""
    reranker: str | None = None
    """A cross-encoder model that reranks candidates."""
    rerank_candidates: int = Field(20, ge=1, le=500)
    """Candidates the reranker scores."""
    dedupe: bool = True
    """Drop passages that repeat another's text or span."""

    # Answering.
    top_k: int = Field(5, ge=1, le=100)
    """Passages retrieved and given to the answerer."""
    answerer: str = "extractive"
    """Who writes the answer (`qa answerers` lists them)."""
    # The extractive answerer's trained verifier: `builtin` (shipped in the package), a folder
    # written by `qa train-verifier`, or `off` (the hand-fitted confidence alone).
    verifier: str = "builtin"
    """Answer verifier: builtin, a trained folder, or off."""
    # Below abstain_threshold the answerer abstains; from there up to answer_threshold it offers
    # the closest passage as such. Unset: the thresholds fitted with the verifier (or the index's
    # `qa calibrate` result).
    abstain_threshold: float | None = Field(None, ge=0.0, le=1.0)
    """Confidence below which qa abstains; unset = the fitted one."""
    answer_threshold: float | None = Field(None, ge=0.0, le=1.0)
    """Confidence from which an answer, not the closest passage, is given."""
    context_tokens: int = Field(1500, ge=64)
    """Passage tokens an LLM answerer sees."""

    # OpenAI-compatible LLM answerer.
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    """OpenAI-compatible endpoint of the openai-chat answerer."""
    llm_model: str = "local"
    """Model name sent to that endpoint."""
    llm_api_key: SecretStr | None = None
    """API key sent to that endpoint."""
    llm_timeout: float = Field(60.0, gt=0)
    """Seconds to wait for the LLM."""
    llm_max_retries: int = Field(2, ge=0, le=10)
    """Retries of a failed LLM call."""
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0)
    """Sampling temperature of the LLM."""
    llm_max_tokens: int = Field(512, ge=1)
    """Longest LLM answer, in tokens."""

    # HTTP server.
    host: str = "127.0.0.1"
    """Address the server listens on."""
    port: int = Field(8000, ge=0, le=65535)
    """Port the server listens on (0 = any free port)."""
    api_key: SecretStr | None = None
    """Key clients must send as a Bearer token."""
    max_question_chars: int = Field(2000, ge=1)
    """Longest question accepted."""
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request body accepted (uploads: max_upload_bytes)."""
    # Requests run on one worker per core; at most `queue_limit` wait for one, and only while
    # the wait is estimated under `queue_wait` seconds; later ones get 503 with Retry-After
    # (seconds) instead of an unbounded wait (qa/server/admission.py).
    queue_limit: int = Field(256, ge=0)
    """Requests that may wait for a worker; more get 503."""
    queue_wait: float = Field(5.0, gt=0, le=3600)
    """Longest estimated wait (seconds) before a request gets 503."""
    retry_after: int = Field(1, ge=1, le=3600)
    """Seconds a 503 response asks the client to wait."""
    # The server embeds up to this many of the index's sentences for the answerer ahead of
    # questions, in the background while no request runs; an index with more chunks than this
    # is skipped (qa/server/warmup.py). 0 = never.
    warm_sentences: int = Field(40_000, ge=0, le=50_000)
    """Sentences embedded ahead of questions while idle; 0 = never."""

    # Documents added and removed while the server runs (POST/DELETE /documents).
    # auto = allowed on a loopback host, or anywhere once api_key is set; on = the same, but
    # `qa serve` refuses to start on another host without api_key; off = never.
    uploads: Literal["auto", "on", "off"] = "auto"
    """Documents over HTTP: auto (loopback or api_key), on, off."""
    # The largest upload (all files of one request together), and the types taken, judged by
    # their content: PDF by `%PDF-`, DOCX by its zip holding word/document.xml, text by UTF-8,
    # image (.png, .jpg/.jpeg, .tif/.tiff, .webp; read by OCR) by its header.
    max_upload_bytes: int = Field(50 * 2**20, ge=1024)
    """Largest upload (all files of one request)."""
    upload_types: tuple[Literal["txt", "md", "html", "pdf", "docx", "image"], ...] = (
        "txt",
        "md",
        "html",
        "pdf",
        "docx",
        "image",
    )
    """File types uploads accept, judged by content."""
    # How often (seconds) the server looks at the index for a change made elsewhere (`qa
    # index` in another terminal, another server's upload); 0 = never.
    watch_interval: float = Field(1.0, ge=0.0, le=3600.0)
    """Seconds between checks for an index changed elsewhere."""
    # How many days a served answer stays on record for feedback (POST /feedback names it by
    # answer_id); older ones nobody rated are dropped. Feedback stays until deleted.
    served_answers_days: int = Field(30, ge=1, le=36500)
    """Days a served answer stays on record for feedback."""

    @field_validator("upload_types", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # `--upload-types pdf,docx` on the command line (the environment takes JSON too).
        return (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_tokens ({self.chunk_tokens})"
            )
        return self


# How `qa <command> --help` and the configuration page group the settings, in this order.
# Every field belongs to exactly one group (tests/test_cli.py checks).
SETTING_GROUPS: dict[str, tuple[str, ...]] = {
    "corpus and index": (
        "corpus_dir", "index_dir", "encoding", "chunk_tokens", "chunk_overlap",
        "ocr_dpi", "ocr_max_pixels", "ocr_max_pages",
        "embedding_model", "embedding_backend", "embedding_batch_size", "embedding_dtype",
        "embedding_processes", "embedding_workers", "embedding_cache", "device",
        "model_cache_dir", "store", "database_url", "database_replica_url", "pg_schema",
        "pg_keyword", "pg_pool_size", "index_type", "auto_index_threshold", "hnsw_m",
        "hnsw_ef_search", "ivf_nprobe",
    ),
    "retrieval": (
        "top_k", "retrieval", "fusion", "fusion_weight", "rrf_k", "candidates", "rescore",
        "reranker", "rerank_candidates", "dedupe",
    ),
    "answering": (
        "answerer", "verifier", "abstain_threshold", "answer_threshold", "context_tokens",
        "llm_base_url", "llm_model", "llm_api_key", "llm_timeout", "llm_max_retries",
        "llm_temperature", "llm_max_tokens",
    ),
    "server": (
        "host", "port", "api_key", "max_question_chars", "max_body_bytes", "queue_limit",
        "queue_wait", "retry_after", "warm_sentences", "uploads", "max_upload_bytes",
        "upload_types", "watch_interval", "served_answers_days",
    ),
}  # fmt: skip


def env_file() -> str | None:
    """The `.env`-style file Settings reads: QA_ENV_FILE when set (empty: none), else `.env`."""
    named = os.environ.get("QA_ENV_FILE")
    return ".env" if named is None else named or None


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment plus explicit overrides (None values are ignored,
    except `_env_file=None`, which reads no `.env` file).

    Validation problems become a ConfigError naming the field and the fix.
    """
    given = {k: v for k, v in overrides.items() if v is not None or k == "_env_file"}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"Invalid settings: {problems}. Fix the option or the QA_* environment variable."
        ) from None
