"""Where the files that ship beside the code live: the chat page (`web/`), prompts (`prompts/`)
and the trained answer verifier (`qa/answering/verifier/model/`, package data in every install).

In the repository they are top-level folders, as the layout asks. A wheel carries them inside the
package as `qa/_web` and `qa/_prompts` (`pyproject.toml` maps them), so an installed `qa` finds
them without a source tree; a clone or an editable install uses the repository's folders.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from qa.errors import ConfigError

_HERE = Path(__file__).resolve().parent
# Folder name in the repository -> package folder inside an installed wheel.
_PACKAGED = {"web": "_web", "prompts": "_prompts"}


def resource_dir(name: Literal["web", "prompts"]) -> Path:
    """The installed copy of the folder `name`, else the repository's own."""
    packaged = _HERE / _PACKAGED[name]
    if packaged.is_dir():
        return packaged
    source = _HERE.parent / name
    if source.is_dir():
        return source
    raise ConfigError(
        f"The {name}/ files of qa are missing: neither {packaged} nor {source} exists. "
        "Reinstall qa from a wheel (`pip install qa-*.whl -c constraints.txt`) or from a clone "
        "(`pip install -c constraints.txt -e .`)."
    )


VERIFIER_DIR = _HERE / "answering" / "verifier" / "model"


def verifier_version(folder: Path = VERIFIER_DIR) -> str | None:
    """The version of the verifier in `folder`: its weights' name plus a digest of its metadata
    and fitted combination (a change of either is a new version); None when there is none.
    Read from files only, so any layer can name it (the index manifest does)."""
    meta = folder / "meta.json"
    if not meta.is_file():
        return None
    digest = hashlib.sha256()
    for name in ("meta.json", "combiner.json"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    name = json.loads(meta.read_text(encoding="utf-8")).get("version", "verifier")
    return f"{name}+{digest.hexdigest()[:8]}"
