"""The exported encoder (qa.embedding.export) run by onnxruntime or OpenVINO, without torch.

Same tokenizer as sentence-transformers (the model folder's own, on the `tokenizers` package:
qa.embedding.wordpieces), same truncation (the model's max_seq_length, 256 word pieces with
[CLS]/[SEP]), and pooling plus normalisation inside the graph, so vectors match torch fp32
(cosines in bench/README.md). With the export cached, nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qa.config import cpu_cores
from qa.embedding import export
from qa.embedding.cache import QueryVectors
from qa.embedding.wordpieces import WordPieces

log = logging.getLogger(__name__)

# Backend name -> the ONNX variant it runs.
VARIANT = {"onnx": "fp32", "onnx-int8": "int8", "openvino": "fp32"}
_QUERY_CACHE_SIZE = 1024
# Texts per encoder call, whatever embedding_batch_size says (it still sizes `qa index`'s
# slices). On a CPU, 8 texts a call embed as fast as 32 at a fraction of the peak memory:
# 32 x 256 pieces make ~100 MB attention tensors, which each session's arena keeps.
_CALL_TEXTS = 8
# Fewer texts than this stay on one session: the extractive answerer embeds a request's few
# dozen sentences in the server, which already runs one request per core.
_PARALLEL_MIN_TEXTS = 128
# Runs (input_ids, attention_mask, token_type_ids) -> (n, dim) normalised vectors.
Runner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def runtime_threads() -> int:
    """Threads for one encoder call: one. Two threads on one call spin against each other and
    the neighbours: one embeds passages as fast and questions faster (bench/embedding.py), and
    concurrent requests use the other cores."""
    return 1


def onnxruntime_runner(path: Path) -> Runner:
    """An onnxruntime session over `path` (all graph optimisations, `runtime_threads()`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = runtime_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # its warnings about unused initialisers are noise here
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feed = dict(zip(export.INPUTS, (ids, mask, types), strict=True))
        return np.asarray(session.run(None, feed)[0])

    return run


def openvino_runner(path: Path) -> Runner:
    """OpenVINO's CPU plugin compiling the ONNX file directly (latency hint, one stream)."""
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": runtime_threads()}
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one infer request: one call at a time

    def run(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        with lock:
            out = request.infer(dict(zip(export.INPUTS, (ids, mask, types), strict=True)))
            return np.array(out[compiled.output(0)], copy=True)

    return run


_RUNNERS: dict[str, Callable[[Path], Runner]] = {
    "onnx": onnxruntime_runner,
    "onnx-int8": onnxruntime_runner,
    "openvino": openvino_runner,
}


class ExportedEmbedder:
    """An Embedder running the exported encoder; loaded on first use, shared by all threads."""

    dtype = "float32"
    processes = 1

    def __init__(
        self,
        model: str,
        *,
        backend: str,
        batch_size: int = 32,
        folder: Path | None = None,
        workers: int = 0,
    ) -> None:
        if backend not in VARIANT:
            raise ValueError(f"no exported backend {backend!r}; use one of {sorted(VARIANT)}")
        self.name = model
        self.backend = backend
        self.batch_size = batch_size
        self.folder = Path(folder) if folder is not None else export.default_folder()
        # Document batches run on this many sessions at once, one thread each: on a quiet
        # 2-core EPYC two sessions embedded 1.9x the passages/s of one, and 1.1x those of one
        # session with two threads (bench/README.md). Made on the first call of
        # `_PARALLEL_MIN_TEXTS` texts or more.
        self.workers = workers if workers > 0 else cpu_cores()
        self._run: Runner | None = None
        self._make: Callable[[], Runner] | None = None
        self._doc_runs: list[Runner] = []
        self._tokenizer: WordPieces | None = None
        self._dim = 0
        self._lock = threading.Lock()
        self._queries = QueryVectors(_QUERY_CACHE_SIZE)

    def _load(self) -> None:
        if self._run is not None:
            return
        with self._lock:
            if self._run is not None:
                return
            path = export.resolve_model_path(self.name)
            if Path(path).is_dir():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            self._tokenizer = WordPieces(path)
            make = _RUNNERS[self.backend]
            # The file's check loads it and embeds the probe: keep that session and its width.
            runners: dict[Path, tuple[Runner, int]] = {}

            def check(file: Path) -> np.ndarray:
                run = make(file)
                probe = self._encode(run, [export.PROBE])[0]
                runners[file] = run, int(probe.shape[0])
                return probe

            file = export.exported_model(path, self.folder, VARIANT[self.backend], check=check)
            if file not in runners:
                check(file)
            self._run, self._dim = runners[file]
            self._make = lambda: make(file)

    def _encode(self, run: Runner, texts: Sequence[str]) -> np.ndarray:
        assert self._tokenizer is not None
        batch = self._tokenizer.encode(texts)
        return run(batch.input_ids, batch.attention_mask, batch.token_type_ids)

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    @property
    def max_tokens(self) -> int:
        self._load()
        assert self._tokenizer is not None
        return self._tokenizer.max_seq_length - 2  # [CLS] and [SEP]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        self._load()
        assert self._tokenizer is not None
        return self._tokenizer.count(texts)

    def embed_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self._load()
        assert self._run is not None
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of alike lengths pad little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        size = min(self.batch_size, _CALL_TEXTS)
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        runs = self._document_runners(len(batches) if len(texts) >= _PARALLEL_MIN_TEXTS else 1)
        # Batch i goes to session i mod n: with batches sorted by length, each gets a fair share.
        # Sessions release the GIL while they run, so threads are enough.
        shares = [batches[n :: len(runs)] for n in range(len(runs))]

        def embed(share: list[list[int]], run: Runner) -> None:
            for rows in share:
                out[rows] = self._encode(run, [texts[i] for i in rows])

        if len(runs) == 1:
            embed(shares[0], runs[0])
        else:
            with ThreadPoolExecutor(len(runs), thread_name_prefix="qa-embed") as pool:
                for done in [
                    pool.submit(embed, sh, run) for sh, run in zip(shares, runs, strict=True)
                ]:
                    done.result()
        return _unit(out)

    def _document_runners(self, batches: int) -> list[Runner]:
        """Sessions for `batches` document batches: the question session plus up to
        `workers - 1` more, made once (each holds its own copy of the weights)."""
        assert self._run is not None and self._make is not None
        wanted = min(self.workers, batches)
        if len(self._doc_runs) + 1 < wanted:
            with self._lock:
                while len(self._doc_runs) + 1 < wanted:
                    self._doc_runs.append(self._make())
        return [self._run, *self._doc_runs][: max(wanted, 1)]

    def embed_query(self, text: str) -> np.ndarray:
        cached = self._queries.get(text)
        if cached is not None:
            return cached
        self._load()
        assert self._run is not None
        vector = _unit(self._encode(self._run, [text]))[0]
        return self._queries.put(text, vector)

    def clear_query_cache(self) -> None:
        """Forget cached question vectors (benchmarks time the encoder with it)."""
        self._queries.clear()

    def close(self) -> None:
        """Nothing to stop (no worker processes); here for the same surface as torch's."""


def _unit(vectors: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out
