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
        env_prefix="QA_", env_file=".env", extra="forbid", frozen=True
    )

    def __init__(self, **values: Any) -> None:
        # An explicit `_env_file` (None included) wins over QA_ENV_FILE.
        values.setdefault("_env_file", env_file())
        super().__init__(**values)

    # Where things are.
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")

    # Chunking (token counts in the `encoding` below).
    encoding: str = "cl100k_base"
    chunk_tokens: int = Field(200, ge=16, le=8192)
    chunk_overlap: int = Field(30, ge=0)

    # Embeddings.
    embedding_model: str = DEFAULT_MODEL
    embedding_batch_size: int = Field(32, ge=1, le=4096)
    device: str = "cpu"
    # How the model runs (bench/README.md measures each): auto = the fastest that runs here and
    # matches torch fp32 (qa/embedding/backends.py); torch fp32/bf16, ONNX (fp32, int8), OpenVINO.
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino"] = "auto"
    embedding_dtype: Literal["float32", "bfloat16"] = "float32"
    embedding_processes: int = Field(1, ge=1, le=64)
    # Exported backends: encoder sessions embedding document batches side by side, one thread
    # each (0 = one per CPU core this process may use). Questions always use one.
    embedding_workers: int = Field(0, ge=0, le=64)
    # Vectors cached by (model, text hash), so re-indexing re-embeds only new text.
    embedding_cache: bool = True
    # Exported encoder files (ONNX) of the onnx/openvino backends. Unset: one folder per user,
    # $XDG_CACHE_HOME/qa/models (else ~/.cache/qa/models), shared by every index: an export
    # depends on the model and package versions only, and makes one costs ~20 s and torch.
    model_cache_dir: Path | None = None

    # Where the index lives: the FAISS folder (one machine) or PostgreSQL + pgvector (shared).
    store: Literal["faiss", "postgres"] = "faiss"
    database_url: SecretStr | None = None
    database_replica_url: SecretStr | None = None
    # Postgres schema holding the tables (one database can hold several indexes).
    pg_schema: str = "qa"
    # Keyword search of the Postgres store: app-side BM25 (qa.stores.bm25, saved in the database)
    # or Postgres full-text ranking (ts_rank_cd); see bench/bench_pg.py for SciFact numbers.
    pg_keyword: Literal["bm25", "fulltext"] = "bm25"
    # Connections each process keeps open to the database (one per concurrent search).
    pg_pool_size: int = Field(8, ge=1, le=256)

    # Vector index: "auto" picks exact search for small corpora, HNSW past the threshold.
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = "auto"
    auto_index_threshold: int = Field(100_000, ge=1)
    hnsw_m: int = Field(32, ge=4, le=256)
    # 256: recall@10 0.96 at 1M chunks in ~1 ms (128 gives 0.93; bench/README.md).
    hnsw_ef_search: int = Field(256, ge=1)
    ivf_nprobe: int = Field(32, ge=1)

    # Retrieval: dense, BM25 or both fused; candidates per list before fusion and rescoring.
    retrieval: Literal["dense", "bm25", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "convex"] = "convex"
    fusion_weight: float = Field(0.7, ge=0.0, le=1.0)
    rrf_k: int = Field(60, ge=1)
    candidates: int = Field(50, ge=1, le=2000)
    rescore: bool = True
    reranker: str | None = None
    rerank_candidates: int = Field(20, ge=1, le=500)
    dedupe: bool = True

    # Answering.
    top_k: int = Field(5, ge=1, le=100)
    answerer: str = "extractive"
    # The extractive answerer's trained verifier: `builtin` (shipped in the package), a folder
    # written by `qa train-verifier`, or `off` (the hand-fitted confidence alone).
    verifier: str = "builtin"
    # Below abstain_threshold the answerer abstains; from there up to answer_threshold it offers
    # the closest passage as such. Unset: the thresholds fitted with the verifier (or the index's
    # `qa calibrate` result).
    abstain_threshold: float | None = Field(None, ge=0.0, le=1.0)
    answer_threshold: float | None = Field(None, ge=0.0, le=1.0)
    context_tokens: int = Field(1500, ge=64)

    # OpenAI-compatible LLM answerer.
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    llm_model: str = "local"
    llm_api_key: SecretStr | None = None
    llm_timeout: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(512, ge=1)

    # HTTP server.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    max_question_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Requests run on one worker per core; at most `queue_limit` wait for one, and only while
    # the wait is estimated under `queue_wait` seconds; later ones get 503 with Retry-After
    # (seconds) instead of an unbounded wait (qa/server/admission.py).
    queue_limit: int = Field(256, ge=0)
    queue_wait: float = Field(5.0, gt=0, le=3600)
    retry_after: int = Field(1, ge=1, le=3600)
    # The server embeds up to this many of the index's sentences for the answerer ahead of
    # questions, in the background while no request runs; an index with more chunks than this
    # is skipped (qa/server/warmup.py). 0 = never.
    warm_sentences: int = Field(40_000, ge=0, le=50_000)

    # Documents added and removed while the server runs (POST/DELETE /documents).
    # auto = allowed on a loopback host, or anywhere once api_key is set; on = the same, but
    # `qa serve` refuses to start on another host without api_key; off = never.
    uploads: Literal["auto", "on", "off"] = "auto"
    # The largest upload (all files of one request together), and the types taken, judged by
    # their content: PDF by `%PDF-`, DOCX by its zip holding word/document.xml, text by UTF-8.
    max_upload_bytes: int = Field(50 * 2**20, ge=1024)
    upload_types: tuple[Literal["txt", "md", "html", "pdf", "docx"], ...] = (
        "txt",
        "md",
        "html",
        "pdf",
        "docx",
    )
    # How often (seconds) the server looks at the index for a change made elsewhere (`qa
    # index` in another terminal, another server's upload); 0 = never.
    watch_interval: float = Field(1.0, ge=0.0, le=3600.0)

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
