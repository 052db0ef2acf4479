"""OCR: how well scanned pages read, and how fast.

Builds its own test set: the demo article (corpus/) and the start of PEP 703 (a public-domain
text, bench/data/pep-0703.rst) typeset onto A4 pages (DejaVu Serif 11 pt, 1-inch margins) and
rendered at 150 and 300 dpi, clean, with mild noise (Gaussian noise, then JPEG at quality 80,
as a scanner saves), and turned by 1 degree; and scan-like PDFs of the noisy pages (one
picture a page, no text layer). Each condition's pages are indexed by the real path (`qa
index`: readers -> OCR -> clean-up -> chunks -> FAISS) and compared with the same pages as text:

- character error rate: edit distance between the recognised text of a page and the text
  typeset on it, over the length of the latter (whitespace runs count as one space; case and
  punctuation count);
- retrieval hit@5 (and hit@1): for questions written for these pages, whether a passage of the
  right page is among the first five (is the first), on the OCR index and on the text index of
  the same pages;
- pages/s of OCR alone (the page's share of `qa index`'s time).

`--http` measures instead a 10-page scanned PDF uploaded to a running `qa serve` (the page's
POST /documents) until /ask cites it: the seconds, the job's pages/s, and the load.

    .venv/bin/python bench/ocr.py [--pages-per-doc 5] [--http]
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import tempfile
import time
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, Run, load, table
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
DOCS = {
    "article": ROOT / "corpus" / "china-blockchain-policy-2017-2019.txt",
    "pep703": ROOT / "bench" / "data" / "pep-0703.rst",
}
# Questions written for this benchmark: (document, 1-based page, question). Each page's text is
# what the typesetting below puts there (--pages-per-doc 5).
QUESTIONS = [
    ("article", 1, "When were the Huangpu District Blockchain Policy 2.0 rules issued?"),
    ("article", 1, "Which committee publicized support for small and micro enterprises' R&D?"),
    ("article", 2, "Who issued the risk tips on disguised ICO activities in January 2018?"),
    (
        "article",
        2,
        "When were the Regulations on the Management of Blockchain Information Services issued?",
    ),
    ("article", 3, "How many blockchain information services were in the second filing batch?"),
    ("article", 3, "From what date will the cryptography law be implemented?"),
    ("article", 4, "How many blockchain group standards were there as of May 2019?"),
    (
        "article",
        4,
        "Which institute developed the blockchain and distributed ledger reference "
        "architecture standard?",
    ),
    ("article", 5, "How large an industry fund does Huangpu District encourage?"),
    ("article", 5, "What share of the investment does Kunming's digital economy subsidy cover?"),
    ("pep703", 1, "Where are most processor cycles of scientific computing spent?"),
    ("pep703", 1, "Which kinds of parallelism do neural network models expose?"),
    ("pep703", 2, "What does the Dose-3D project aim to improve?"),
    ("pep703", 2, "Why does the DataLoader use fork() on Linux?"),
    ("pep703", 3, "How many GPUs does NVIDIA's DGX-A100 have?"),
    ("pep703", 3, "What does TorchScript capture of a model?"),
    ("pep703", 4, "Which macro does CPython define when built with --disable-gil?"),
    ("pep703", 4, "Which letter does the ABI tag of a free-threaded build include?"),
    ("pep703", 5, "Which value of the local reference count marks an object immortal?"),
    ("pep703", 5, "How large is the per-object lock of the ob_mutex field?"),
]


# -- the test set -------------------------------------------------------------------------


def paragraphs(name: str) -> list[str]:
    """The document's prose paragraphs, one string each (reST headings and markup dropped)."""
    raw = DOCS[name].read_text(encoding="utf-8")
    out = []
    for block in re.split(r"\n\s*\n", raw):
        lines = [x for x in block.split("\n") if x.strip()]
        if not lines or (re.fullmatch(r"[=\-~^]+", lines[-1].strip()) and len(lines) == 1):
            continue
        if name == "pep703" and (lines[0].startswith((" ", "..", ":")) or ":" in lines[0][:16]):
            continue  # code, directives, the header fields
        lines = [x for x in lines if not re.search(r"[=\-~^\']{3,}\s*$", x)]
        text = " ".join(x.strip() for x in lines)
        text = re.sub(r"`+_*|\*\*|:[a-z]+:", "", text).replace("__", "")
        if text:
            out.append(" ".join(text.split()))
    return out


def typeset(paras: list[str], dpi: int, n_pages: int) -> list[tuple[Image.Image, str]]:
    """A4 pages of `paras` at `dpi`, and the text each holds (lines joined, paragraphs apart).

    Lines and pages break where they do at 300 dpi, so every resolution holds the same text.
    """
    layout = _layout(paras, n_pages)
    font = ImageFont.truetype(str(FONT), round(11 / 72 * dpi))
    size = (round(8.27 * dpi), round(11.69 * dpi))
    pages = []
    for placed in layout:
        page = Image.new("L", size, 255)
        draw = ImageDraw.Draw(page)
        for y, line in placed:
            draw.text((dpi, round(y * dpi / 300)), line, font=font, fill=0)
        text = "\n".join(line for _, line in placed)
        pages.append((page, text))
    return pages


def _layout(paras: list[str], n_pages: int) -> list[list[tuple[int, str]]]:
    """(y at 300 dpi, line) of each page; an empty line "" marks a paragraph's end."""
    font = ImageFont.truetype(str(FONT), round(11 / 72 * 300))
    height, margin, line_h = round(11.69 * 300), 300, round(11 / 72 * 300 * 1.45)
    pages: list[list[tuple[int, str]]] = []
    page: list[tuple[int, str]] = []
    y = margin
    for para in paras:
        wrapped = _wrap(para, font, round(8.27 * 300) - 2 * margin)
        for i, line in enumerate(wrapped):
            if y + line_h > height - margin:
                pages.append(page)
                if len(pages) == n_pages:
                    return pages
                page, y = [], margin
            page.append((y, line))
            y += line_h
            if i == len(wrapped) - 1:
                page.append((y, ""))
                y += line_h // 2
    return [*pages, page][:n_pages]


def _wrap(text: str, font: Any, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if font.getlength(trial) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def noisy(image: Image.Image, seed: int) -> Image.Image:
    """Mild scanner noise: Gaussian noise (sigma 12) and JPEG at quality 80."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (image.height, image.width))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=80)
    return Image.open(io.BytesIO(out.getvalue()))


def rotated(image: Image.Image) -> Image.Image:
    return image.rotate(1.0, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)


# -- measures ----------------------------------------------------------------------------


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one numpy pass per character of `a`."""
    if not a or not b:
        return max(len(a), len(b))
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    cols = np.arange(len(b) + 1)
    row = cols.copy()
    codes = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    for i, code in enumerate(codes, start=1):
        sub = row[:-1] + (bb != code)
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, sub)
        # Insertions along the row: a running minimum of best[k] + (j - k).
        row = np.minimum.accumulate(best - cols) + cols
    return int(row[-1])


def cer(got: str, want: str) -> float:
    got, want = normalise(got), normalise(want)
    return edit_distance(got, want) / max(len(want), 1)


def index_and_search(corpus: Path, work: Path, label: str) -> dict[str, Any]:
    """Index `corpus` (OCR seconds and pages counted) and answer QUESTIONS by retrieval."""
    from qa.config import load_settings
    from qa.embedding.models import embedder_for, resolve_backend
    from qa.ingest.build import build_index
    from qa.pipeline import Pipeline

    settings = load_settings(
        corpus_dir=corpus, index_dir=work / f"index-{label}", embedding_cache=False, _env_file=None
    )
    settings, _ = resolve_backend(settings)
    stamps: list[tuple[float, int]] = []
    started = time.perf_counter()
    build_index(
        settings,
        embedder=embedder_for(settings),
        rebuild=True,
        on_pages=lambda done, total: stamps.append((time.perf_counter(), done)),
    )
    seconds = time.perf_counter() - started
    pipeline = Pipeline.load(settings)
    texts = {d.id: pipeline.document(d.id).text for d in pipeline.store.document_list()}
    hits, firsts = [], []
    for doc, page, question in QUESTIONS:
        right = [
            p.chunk.doc_id.startswith(f"{doc}-p{page}.") for p in pipeline.search(question, k=5)
        ]
        hits.append(any(right))
        firsts.append(bool(right) and right[0])
    ocr_pages = stamps[-1][1] if stamps else 0
    ocr_seconds = stamps[-1][0] - stamps[0][0] if len(stamps) > 1 else 0.0
    return {
        "texts": texts,
        "hits": hits,
        "firsts": firsts,
        "index_seconds": round(seconds, 1),
        "ocr_pages": ocr_pages,
        "pages_per_s": round(ocr_pages / ocr_seconds, 3) if ocr_seconds else None,
    }


def quality(pages_per_doc: int, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """CER and hit@5 per condition against the same pages as text."""
    rendered = {
        (name, dpi): typeset(paragraphs(name), dpi, pages_per_doc)
        for name in DOCS
        for dpi in (150, 300)
    }
    # The text corpus: each page's typeset text as a .txt file.
    text_dir = work / "text"
    text_dir.mkdir()
    for (name, dpi), pages in rendered.items():
        if dpi == 300:
            for n, (_, text) in enumerate(pages, start=1):
                (text_dir / f"{name}-p{n}.txt").write_text(text + "\n", encoding="utf-8")
    baseline = index_and_search(text_dir, work, "text")
    results: dict[str, Any] = {"text": _summary(baseline, None)}
    rows = [["same pages as text", "-", "-", _hit(baseline), _hit(baseline, "firsts"), "-"]]
    for dpi in (300, 150):
        for variant in ("clean", "noisy", "rotated", "scan-pdf"):
            label = f"{variant}-{dpi}"
            folder = work / label
            folder.mkdir()
            refs: dict[str, str] = {}
            for (name, at), pages in rendered.items():
                if at != dpi:
                    continue
                for n, (image, text) in enumerate(pages, start=1):
                    stem = f"{name}-p{n}"
                    refs[stem] = text
                    seed = zlib.crc32(f"{name}{n}{dpi}".encode())
                    if variant == "clean":
                        image.save(folder / f"{stem}.png")
                    elif variant == "noisy":
                        noisy(image, seed).save(folder / f"{stem}.jpg", quality=95)
                    elif variant == "rotated":
                        rotated(image).save(folder / f"{stem}.png")
                    else:
                        noisy(image, seed).convert("RGB").save(
                            folder / f"{stem}.pdf", resolution=dpi
                        )
            got = index_and_search(folder, work, label)
            rates = {
                stem: cer(
                    next((t for d, t in got["texts"].items() if d.startswith(stem + ".")), ""), ref
                )
                for stem, ref in refs.items()
            }
            summary = _summary(got, rates)
            results[label] = summary
            rows.append(
                [
                    label,
                    summary["cer_mean"],
                    summary["cer_max"],
                    _hit(got),
                    _hit(got, "firsts"),
                    got["pages_per_s"],
                ]
            )
            print(label, summary, flush=True)
    tables = [
        table(
            "OCR quality: character error rate and retrieval hit@5 against the same pages as text",
            ["pages", "CER mean", "CER worst page", "hit@5", "hit@1", "OCR pages/s"],
            rows,
            note=f"{2 * pages_per_doc} A4 pages (demo article, PEP 703), {len(QUESTIONS)} "
            "questions; scan-pdf = the noisy pages as picture-only PDFs, rendered at ocr_dpi.",
        )
    ]
    return results, tables


def _hit(got: dict[str, Any], key: str = "hits") -> float:
    return round(sum(got[key]) / len(got[key]), 3)


def _summary(got: dict[str, Any], rates: dict[str, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hit_at_5": _hit(got),
        "hit_at_1": _hit(got, "firsts"),
        "index_seconds": got["index_seconds"],
        "ocr_pages": got["ocr_pages"],
        "pages_per_s": got["pages_per_s"],
    }
    if rates:
        out["cer_mean"] = round(sum(rates.values()) / len(rates), 4)
        out["cer_max"] = round(max(rates.values()), 4)
        out["cer_per_page"] = {k: round(v, 4) for k, v in sorted(rates.items())}
    return out


# -- upload over HTTP ---------------------------------------------------------------------


def http(work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A 10-page scanned PDF through POST /documents until /ask cites it."""
    import httpx
    from httpload import free_port
    from live import start_serve

    pages = typeset(paragraphs("pep703"), 300, 10)
    buffer = io.BytesIO()
    images = [noisy(p, n).convert("RGB") for n, (p, _) in enumerate(pages)]
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=300)
    (work / "corpus").mkdir()
    shutil.copy(DOCS["article"], work / "corpus")
    proc, url = start_serve(work, free_port())
    try:
        before = load()
        started = time.perf_counter()
        files = {"files": ("scanned-pep-0703.pdf", buffer.getvalue(), "application/pdf")}
        job_id = httpx.post(f"{url}/documents", files=files, timeout=60).json()["job_id"]
        first_page = last_page = None
        while True:
            job = httpx.get(f"{url}/jobs/{job_id}", timeout=10).json()
            progress = job["progress"]
            now = time.perf_counter() - started
            if progress["unit"] == "pages" and progress["done"] >= 1 and first_page is None:
                first_page = (now, progress["done"])
            if progress["unit"] == "pages":
                last_page = (now, progress["done"])
            if job["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        job_seconds = time.perf_counter() - started
        answerable = None
        question = "Which macro does CPython define when built with --disable-gil?"
        while job["state"] == "done" and time.perf_counter() - started < 300:
            answer = httpx.post(f"{url}/ask", json={"question": question}, timeout=60).json()
            if any(c["doc_id"] == "scanned-pep-0703.pdf" for c in answer.get("citations", [])):
                answerable = time.perf_counter() - started
                break
            time.sleep(0.5)
        after = load()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rate = None
    if first_page and last_page and last_page[1] > first_page[1]:
        rate = round((last_page[1] - first_page[1]) / (last_page[0] - first_page[0]), 3)
    results = {
        "pages": 10,
        "job_state": job["state"],
        "job_seconds": round(job_seconds, 1),
        "upload_to_answerable_seconds": None if answerable is None else round(answerable, 1),
        "job_pages_per_s": rate,
        "load_during": {"before": before, "after": after},
    }
    rows = [[10, results["job_seconds"], results["upload_to_answerable_seconds"], rate, before[0]]]
    return results, [
        table(
            "A 10-page scanned PDF uploaded through POST /documents (qa serve, 300-dpi noisy scan)",
            ["pages", "job s", "upload -> answerable s", "pages/s", "load before"],
            rows,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages-per-doc", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="the upload over HTTP instead")
    args = parser.parse_args()
    run = Run("ocr-http" if args.http else "ocr")
    with tempfile.TemporaryDirectory(prefix="qa-bench-ocr-") as tmp:
        work = Path(tmp)
        results, tables = http(work) if args.http else quality(args.pages_per_doc, work)
    run.write(results, tables)


if __name__ == "__main__":
    main()
