"""Which products a model version was fit on: sorted 64-bit hashes of their ids, per run.

Every training logs `training/fitted_ids.npy` in its run (beside the model folder, not in it,
so scoring and serving downloads do not grow): a sorted uint64 array, each value the first
8 bytes (little-endian) of BLAKE2b over the product id's UTF-8 text, saved with
`allow_pickle=False`. The gate reads the champion's to leave out of the comparison the test
rows the champion was fit on (`core/training/champion.py`).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient

ARTIFACT_DIR = "training"
FILE_NAME = "fitted_ids.npy"
ARTIFACT_PATH = f"{ARTIFACT_DIR}/{FILE_NAME}"


def _hashes(ids: Iterable[object]) -> np.ndarray:
    """Each id's uint64 hash, in order."""
    digests = (hashlib.blake2b(str(i).encode(), digest_size=8).digest() for i in ids)
    return np.array([int.from_bytes(d, "little") for d in digests], dtype=np.uint64)


def id_hashes(ids: Iterable[object]) -> np.ndarray:
    """Sorted unique uint64 hashes of product ids (as text)."""
    return np.unique(_hashes(ids))


def contains(hashes: np.ndarray, ids: Iterable[object]) -> np.ndarray:
    """Boolean mask: which of `ids` are among the sorted `hashes`."""
    wanted = _hashes(ids)
    if hashes.size == 0 or wanted.size == 0:
        return np.zeros(wanted.size, dtype=bool)
    at = np.minimum(np.searchsorted(hashes, wanted), hashes.size - 1)
    return hashes[at] == wanted


def log_fitted_ids(hashes: np.ndarray) -> None:
    """Log the hashes as the active run's `training/fitted_ids.npy`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILE_NAME
        np.save(path, np.ascontiguousarray(hashes, dtype=np.uint64), allow_pickle=False)
        mlflow.log_artifact(str(path), artifact_path=ARTIFACT_DIR)


def load_fitted_ids(client: MlflowClient, run_id: str) -> np.ndarray | None:
    """The run's fitted-id hashes; None for a run that predates them."""
    listed = {a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)}
    if ARTIFACT_PATH not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, ARTIFACT_PATH, tmp)
        hashes = np.load(local, allow_pickle=False)
    if hashes.dtype != np.uint64 or hashes.ndim != 1:
        return None
    return hashes
