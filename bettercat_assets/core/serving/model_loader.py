"""Loading a client's registered model for the fleet server, through the model's own code.

A version is downloaded once into a local folder (`<dir>/<model>/<version>/`, moved into place
only when complete) and loaded with `mlflow.pyfunc.load_model`: whatever the registered pyfunc
does at load time happens here too, including the compact form's checksum check
(`TopKCategoriesModel.load_context`). A later load of the same version (after an eviction)
reads the local copy and verifies the checksum again; a copy that fails it is deleted, so the
next load downloads it afresh.

MLflow checks the model's pip requirements against the installed packages on every load
(~50 ms); every bettercat model pins the same serving requirements, so the check runs on a
process's first load only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from bettercat_assets.core.config.errors import ModelNotFoundError
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.model import store as model_store
from bettercat_assets.core.serving.model_cache import CachedModel

#: Python objects around a loaded model's arrays (PyFuncModel, its metadata and signature,
#: the model class): added to the arrays' bytes when the cache budgets a model.
PER_MODEL_OVERHEAD_BYTES = 128 * 1024
COMPLETE_MARKER = ".complete"


class ModelNotServableError(Exception):
    """A registered version this server cannot serve (old layout, damaged or refused model)."""


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_nbytes(model: Any, local: Path) -> int:
    """What the cache budgets for a loaded pyfunc: the bytes its Python model reports it holds
    (`nbytes`), else the size of its files; plus the per-model overhead."""
    try:
        held = int(model.unwrap_python_model().nbytes)
    except (AttributeError, TypeError, ValueError, MlflowException):
        held = _folder_bytes(local)
    return held + PER_MODEL_OVERHEAD_BYTES


class ModelLoader:
    """Downloads (once) and loads registered versions as MLflow pyfuncs."""

    def __init__(self, settings: TrackingSettings, local_dir: Path) -> None:
        self.settings = settings
        self.local_dir = Path(local_dir)
        self._requirements_checked = False
        self._lock = threading.Lock()

    def local_copy(self, model_name: str, version: int) -> Path:
        """The version's local folder, downloaded first when it is not there yet."""
        target = self.local_dir / model_name / str(int(version))
        if (target / COMPLETE_MARKER).exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            downloaded = model_store.download_serving_model(
                self.settings, model_name, version, str(staging / "download")
            )
            (downloaded / COMPLETE_MARKER).touch()
            shutil.rmtree(target, ignore_errors=True)
            os.replace(downloaded, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def load(self, client_id: str, model_name: str, version: int) -> CachedModel:
        """Download if needed, load and verify; ModelNotServableError says why not."""
        import mlflow.pyfunc

        started = time.perf_counter()
        try:
            local = self.local_copy(model_name, version)
        except ModelNotFoundError as exc:
            raise ModelNotServableError(f"client '{client_id}': {exc}") from None
        with self._lock:
            check, self._requirements_checked = not self._requirements_checked, True
        try:
            model = mlflow.pyfunc.load_model(str(local), suppress_warnings=not check)
        except MlflowException as exc:
            shutil.rmtree(local, ignore_errors=True)  # downloaded afresh next time
            first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else ""
            raise ModelNotServableError(
                f"client '{client_id}': {model_name} v{version} (@champion) cannot be loaded: "
                f"{first}"
            ) from None
        return CachedModel(
            model=model,
            version=int(version),
            nbytes=model_nbytes(model, local),
            load_seconds=time.perf_counter() - started,
        )
