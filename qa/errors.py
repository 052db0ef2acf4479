"""The one exception hierarchy of `qa`; the CLI and the HTTP API map it at the edge.

    QAError                     every error a user can cause or fix
    ├── ConfigError             a setting has a bad value            (HTTP 400/500)
    ├── CorpusError             the corpus folder is missing/empty   (HTTP 503)
    ├── IndexNotFoundError      no index where one was expected      (HTTP 503)
    ├── IndexMismatchError      the index was built with other settings (HTTP 503)
    ├── UnknownAnswererError    an answerer name nobody registered   (HTTP 400)
    ├── UnknownModelError       a /v1 model name no answerer serves  (HTTP 404)
    ├── InvalidQuestionError    empty or over-long question          (HTTP 422)
    ├── InvalidSpanError        a highlight span outside its document (HTTP 422)
    ├── DocumentNotFoundError   no document with that id             (HTTP 404)
    ├── DatabaseError           the PostgreSQL store is unreachable or failed (HTTP 503)
    ├── UploadError             an uploaded file qa will not take     (HTTP 422)
    │   ├── UnsupportedFileError  not a type qa reads (by content)    (HTTP 415)
    │   ├── FileTooLargeError     over max_upload_bytes              (HTTP 413)
    │   └── OcrUnavailableError   a scan, and the OCR extra is not installed (HTTP 422)
    ├── WriteForbiddenError     uploads/deletes are off on this server (HTTP 403)
    ├── JobNotFoundError        no ingest job with that id           (HTTP 404)
    ├── AnswerNotFoundError     no served answer with that answer_id (HTTP 404)
    ├── FeedbackNotFoundError   no feedback with that feedback_id    (HTTP 404)
    └── BackendError            the LLM server is down or erred      (HTTP 502)
        └── BackendTimeoutError it did not answer in time            (HTTP 504)

Messages name the bad value and say what to do. Any other exception is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable


class QAError(Exception):
    """Base class of every error `qa` raises on purpose."""


class ConfigError(QAError):
    """A setting has a value that cannot work."""


class CorpusError(QAError):
    """The corpus folder is missing, empty, or holds no readable document."""


class IndexNotFoundError(QAError):
    """There is no index at the given folder."""


class IndexMismatchError(QAError):
    """The index on disk was built with settings that differ from the current ones."""


class UnknownAnswererError(QAError):
    """No answerer is registered under that name."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        self.available = sorted(available)
        super().__init__(
            f"Unknown answerer {name!r}. Available: {', '.join(self.available)}. "
            "Run `qa answerers` to list them."
        )


class UnknownModelError(QAError):
    """An OpenAI-style model name that maps to no registered answerer."""

    def __init__(self, model: str, available: Iterable[str]) -> None:
        self.model = model
        self.available = sorted(available)
        super().__init__(
            f"Unknown model {model!r}. Available: {', '.join(self.available)} "
            "(GET /v1/models lists them; each is qa-<answerer>)."
        )


class InvalidQuestionError(QAError):
    """The question is empty or too long."""


class InvalidSpanError(QAError):
    """A span to highlight is half given or lies outside its document."""


class DocumentNotFoundError(QAError):
    """No document with that id is in the index."""


class DatabaseError(QAError):
    """The PostgreSQL store (store=postgres) is unreachable, refuses us, or failed."""


class UploadError(QAError):
    """An uploaded file cannot become a document: empty, unreadable, no text, a bad name."""


class UnsupportedFileError(UploadError):
    """An uploaded file is not one of the allowed types, judged by its content."""


class FileTooLargeError(UploadError):
    """An upload is over the size limit (setting max_upload_bytes)."""


class OcrUnavailableError(UploadError):
    """A file needs OCR (an image, a scanned PDF page) and the `ocr` extra is not installed."""


class WriteForbiddenError(QAError):
    """Uploads and deletes are not allowed on this server (see the setting `uploads`)."""


class JobNotFoundError(QAError):
    """No ingest job with that id (finished jobs are kept for a while, then forgotten)."""


class AnswerNotFoundError(QAError):
    """No served answer with that answer_id (never served here, or past its retention)."""


class FeedbackNotFoundError(QAError):
    """No feedback record with that feedback_id."""


class BackendError(QAError):
    """The answer backend (an LLM server) failed or is unreachable."""


class BackendTimeoutError(BackendError):
    """The answer backend did not answer in time."""
