"""Arrays plus a JSON description, checksummed together: how the featurizer and the compact
linear model are saved and loaded (numpy and the standard library only: workers load them).

The sha256 covers the arrays file and the description (minus the checksum itself), so editing
either is refused; arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


def save_checksummed(
    directory: Path, arrays_file: str, meta_file: str, arrays: dict[str, np.ndarray], meta: dict
) -> None:
    """Write `arrays` (npz) and `meta` (JSON, with the checksum of both) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / arrays_file, "wb") as fh:
        np.savez(fh, **arrays)
    meta = {**meta, "sha256": digest(directory / arrays_file, meta)}
    (directory / meta_file).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def load_checksummed(
    npz_path: Path, meta_path: Path, fmt: str, fmt_version: int, what: str, kind: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The description and arrays `save_checksummed` wrote, under any names; ValueError (naming
    `what`, e.g. "compact linear model", and `kind`, e.g. "compact linear") if either is unreadable, of another format, or tampered with."""
    try:
        meta = json.loads(Path(meta_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {meta_path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{meta_path} is not a {what} description")
    if meta.get("format_version") != fmt_version:
        raise ValueError(f"unsupported {kind} format {meta.get('format_version')!r}")
    try:
        found = digest(Path(npz_path), meta)
    except OSError as exc:
        raise ValueError(f"cannot read {npz_path}: {exc}") from exc
    if found != meta.get("sha256"):
        raise ValueError(f"{npz_path} does not match the checksum in {Path(meta_path).name}")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # BadZipFile, pickled object arrays, ...
        raise ValueError(f"cannot read {npz_path}: {exc}") from exc
    return meta, arrays


def digest(npz_path: Path, meta: dict[str, Any]) -> str:
    """sha256 over the arrays file and the JSON description (minus the checksum itself)."""
    h = hashlib.sha256()
    with open(npz_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    described = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(described, sort_keys=True).encode("utf-8"))
    return h.hexdigest()
