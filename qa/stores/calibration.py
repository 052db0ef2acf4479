"""The calibration an index folder carries: the abstention threshold `qa calibrate` fitted.

`calibration.json` sits beside the manifest; a rebuild keeps it (FaissStore.write). Settings
take the saved threshold unless the user set one explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qa.config import Settings
from qa.stores.folder import CALIBRATION_FILE


def read_calibration(index_dir: Path) -> dict[str, Any] | None:
    """The saved calibration of an index folder, or None when there is none."""
    path = Path(index_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def apply_calibration(settings: Settings) -> Settings:
    """Settings with the index folder's calibrated threshold, unless one was set explicitly."""
    if settings.store != "faiss" or "abstain_threshold" in settings.model_fields_set:
        return settings
    saved = read_calibration(settings.index_dir)
    if saved is None:
        return settings
    return settings.model_copy(update={"abstain_threshold": float(saved["abstain_threshold"])})
