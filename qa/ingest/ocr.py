"""Text from pictures of pages: image files and the scanned pages of PDFs, read offline.

The OCR model is RapidOCR's PP-OCRv4 (text detection and recognition; English and Chinese) as
ONNX files inside the `rapidocr-onnxruntime` wheel, run on onnxruntime; PDF pages
are rendered with pypdfium2. Both come with the optional extra `pip install -e '.[ocr]'`
(opencv-python comes with it: 350 MB, and the package caps Python below 3.13); without it a
file that needs OCR gets `OcrUnavailableError` naming the extra, and nothing else changes.

Limits are checked from the image header before anything is decoded: at most `max_pixels`
pixels per image (in place of Pillow's own bomb check, whose message gives no size) and
`max_pages` pages (TIFF frames, or scanned pages of one PDF). A PDF page is rendered at `dpi`,
scaled down to fit `max_pixels` whatever size its page box claims.

Recognising a page takes seconds, so results are kept in a cache folder (one JSON file per
file content hash and reader version): re-indexing a folder reads each scan once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa.errors import OcrUnavailableError, UploadError
from qa.ingest.layout import Box, page_text

if TYPE_CHECKING:
    from PIL.Image import Image

    from qa.config import Settings

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
INSTALL = "pip install -e '.[ocr]'"
# Bump when recognised text for the same file would change (layout, rendering): cache key.
READER_VERSION = 1
# A binarised page with more than this share dark is no page of text on paper (binarise).
_MAX_DARK = 0.4
_PACKAGE = "rapidocr-onnxruntime"


@dataclass(frozen=True)
class OcrOptions:
    """How scans are read (settings ocr_dpi, ocr_max_pixels, ocr_max_pages)."""

    dpi: int = 200
    max_pixels: int = 60_000_000
    max_pages: int = 1000

    @classmethod
    def of(cls, settings: Settings) -> OcrOptions:
        return cls(settings.ocr_dpi, settings.ocr_max_pixels, settings.ocr_max_pages)


def unavailable_message(what: str) -> str:
    """Why `what` cannot be read here, and the command that fixes it."""
    return (
        f"{what} needs OCR, which is an optional extra not installed here: run `{INSTALL}` "
        "(or `pip install 'qa[ocr]'`) and index again"
    )


def require(what: str) -> None:
    """Raise OcrUnavailableError unless the OCR extra's packages import."""
    try:
        import pypdfium2  # noqa: F401
        import rapidocr_onnxruntime  # noqa: F401
        from PIL import Image  # noqa: F401
    except ImportError:
        raise OcrUnavailableError(unavailable_message(what)) from None


def image_pages(name: str, data: bytes, options: OcrOptions) -> int:
    """The pages (frames) of an image file, checked against the limits from its header alone.

    UploadError when it is no image, is damaged, or is over `max_pixels` or `max_pages`.
    """
    require(name)
    from PIL import UnidentifiedImageError

    try:
        with _open(data, options) as image:
            width, height = image.size
            _check_pixels(name, width, height, options)
            # Counting TIFF frames walks their headers only; stop once over the limit.
            frames = 1
            while frames <= options.max_pages and _seek(image, frames):
                frames += 1
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UploadError(f"{name} is not an image qa can read ({exc}); save it as PNG") from None
    if frames > options.max_pages:
        raise UploadError(
            f"{name} has more than {options.max_pages} pages (setting ocr_max_pages); split it, "
            "or raise ocr_max_pages"
        )
    return frames


def image_frames(data: bytes, options: OcrOptions) -> Iterator[Image]:
    """Each page of an image file as RGB (limits checked by `image_pages` first)."""
    from PIL import ImageSequence

    try:
        with _open(data, options) as image:
            for frame in ImageSequence.Iterator(image):
                yield frame.convert("RGB")
    except (OSError, SyntaxError) as exc:  # a truncated or damaged picture
        raise UploadError(f"cannot decode the image ({exc}); save it again as PNG") from None


def pdf_page(data: bytes, index: int, options: OcrOptions) -> Image:
    """Page `index` (0-based) of a PDF rendered at `dpi`, within `max_pixels`."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
        try:
            page = pdf[index]
            width, height = page.get_size()  # points, 1/72 inch
            scale = options.dpi / 72
            if width * height * scale * scale > options.max_pixels:
                scale = (options.max_pixels / (width * height)) ** 0.5
            return page.render(scale=scale, grayscale=True).to_pil().convert("RGB")
        finally:
            pdf.close()
    except pdfium.PdfiumError as exc:
        raise UploadError(f"cannot render page {index + 1} of the PDF ({exc})") from None


def recognise(image: Image) -> str:
    """The text of one page image: lines in reading order, paragraphs apart (layout.py)."""
    engine = _engine()
    image = binarise(image)
    with _ENGINE_LOCK:  # one page at a time: the model already uses every core
        # No angle classifier: it squeezes a long line into 192 x 48 pixels, judges it upside
        # down, and turns a quarter of a clean page's lines into noise (bench/ocr.py: CER 0.26
        # with it, 0.00 without, on a 300-dpi page). Upside-down pages are not turned.
        try:
            found, _ = engine(image, use_cls=False)
        except Exception as exc:  # onnxruntime's and OpenCV's own errors: this page, not a bug
            raise UploadError(f"OCR failed on a page ({type(exc).__name__}: {exc})") from None
    boxes = []
    for points, text, _score in found or ():
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        boxes.append(Box(min(xs), min(ys), max(xs), max(ys), str(text)))
    return page_text(boxes)


def binarise(image: Image) -> Image:
    """The page in black and white (Otsu's threshold), or in grey when that looks wrong.

    JPEG noise around the letters makes the recogniser drop the spaces between words
    ("Invoice4471wasissued"): on bench/ocr.py's scan-like PDFs the error rate falls from
    8.8% to 0.1% at 150 dpi. A page whose threshold leaves over `_MAX_DARK` of it dark (a
    shadowed photo, light text on a dark ground) is read in grey instead.
    """
    import numpy as np
    from PIL import Image as PILImage

    grey = np.asarray(image.convert("L"))
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    below = np.cumsum(counts)
    weighted = np.cumsum(counts * np.arange(256))
    total, mean = below[-1], weighted[-1]
    spread = (mean * below - weighted * total) ** 2 / np.maximum(below * (total - below), 1)
    threshold = int(np.argmax(spread))
    dark = below[threshold] / total
    if dark > _MAX_DARK:
        return image.convert("RGB")
    return PILImage.fromarray(np.where(grey > threshold, 255, 0).astype(np.uint8)).convert("RGB")


def engine_name() -> str:
    """The model and reader that made recognised text (the cache key's part besides content)."""
    return f"{_PACKAGE} {metadata.version(_PACKAGE)} reader {READER_VERSION}"


class OcrCache:
    """Recognised page texts of one file per JSON file: `<sha256>.json` under `folder`."""

    def __init__(self, folder: Path | None, options: OcrOptions) -> None:
        self.folder = folder
        self.key = f"{engine_name()} dpi {options.dpi} max_pixels {options.max_pixels}"

    def get(self, data: bytes) -> dict[int, str]:
        path = self._path(data)
        if path is None or not path.is_file():
            return {}
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(saved, dict) or saved.get("key") != self.key:
            return {}
        return {int(k): str(v) for k, v in saved.get("pages", {}).items()}

    def put(self, data: bytes, pages: dict[int, str]) -> None:
        path = self._path(data)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"key": self.key, "pages": {str(k): v for k, v in pages.items()}})
        fd, tmp = tempfile.mkstemp(prefix=".ocr-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)
        os.replace(tmp, path)  # readers see the old file or the new one, never half

    def _path(self, data: bytes) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(data).hexdigest()}.json"


_ENGINE_LOCK = threading.Lock()
_ENGINE: Any = None


def _engine() -> Any:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            require("This file")
            from rapidocr_onnxruntime import RapidOCR

            # The models ship inside the wheel: nothing is downloaded.
            _ENGINE = RapidOCR(print_verbose=False)
            log.info("OCR model loaded (%s)", engine_name())
    return _ENGINE


def _open(data: bytes, options: OcrOptions) -> Any:
    from PIL import Image

    # Pillow's own bomb check would refuse a large image without its size in the message;
    # ours (`image_pages`, before any decoding) says the size and names the setting.
    Image.MAX_IMAGE_PIXELS = None
    return Image.open(io.BytesIO(data))


def _seek(image: Any, frame: int) -> bool:
    try:
        image.seek(frame)
    except EOFError:
        return False
    return True


def _check_pixels(name: str, width: int, height: int, options: OcrOptions) -> None:
    if width * height > options.max_pixels:
        raise UploadError(
            f"{name} is {width} x {height} pixels, over the limit of {options.max_pixels} "
            "pixels per page (setting ocr_max_pixels); scale it down (300 dpi is plenty), or "
            "raise ocr_max_pixels"
        )
