"""Loading a client's registered model for the fleet server, from its compact form.

A version's `MLmodel` and artifacts (what serving reads, `SERVED_PARTS`) are downloaded once
into a local folder (`<dir>/<model>/<version>/`, moved into place only when complete) and built
by `served_model.load_served`: the registered pyfunc's own Python model over the compact form,
whose checksum is verified and whose arrays are read with `allow_pickle=False` (as batch
scoring does), without MLflow's per-load work. A later load of the same version (after an
eviction) reads the local copy and verifies the checksum again (the arrays' structure,
validated on the first load, is not walked again for the same bytes); a copy that fails it is
deleted, so the next load downloads it afresh.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from mlflow.exceptions import MlflowException

from bettercat_assets.core.config.errors import ModelNotFoundError
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.model import store as model_store
from bettercat_assets.core.serving.model_cache import CachedModel
from bettercat_assets.core.serving.served_model import SERVED_PARTS, ServedModel, load_served

#: Python objects around a loaded model's arrays (the model objects, array headers, the
#: PyFuncModel and signature made for a request MLflow handles): added to the arrays' bytes
#: when the cache budgets a model. Measured with tracemalloc over 120 loaded bench models:
#: ~5 KB each, ~13 KB once the PyFuncModel is made; 16 KB covers both.
PER_MODEL_OVERHEAD_BYTES = 16 * 1024
COMPLETE_MARKER = ".complete"


class ModelNotServableError(Exception):
    """A registered version this server cannot serve (old layout, damaged or refused model)."""


def model_nbytes(model: ServedModel) -> int:
    """What the cache budgets for a loaded model: the bytes of the arrays it holds, plus the
    per-model overhead."""
    return int(model.nbytes) + PER_MODEL_OVERHEAD_BYTES


class ModelLoader:
    """Downloads (once) and loads registered versions for serving."""

    def __init__(self, settings: TrackingSettings, local_dir: Path) -> None:
        self.settings = settings
        self.local_dir = Path(local_dir)
        self.checked: set[tuple[str, ...]] = set()  # arrays validated once (a reload skips it)

    def local_copy(self, model_name: str, version: int) -> Path:
        """The version's local folder, downloaded first when it is not there yet."""
        target = self.local_dir / model_name / str(int(version))
        if (target / COMPLETE_MARKER).exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            downloaded = model_store.download_serving_model(
                self.settings, model_name, version, str(staging / "download"), SERVED_PARTS
            )
            (downloaded / COMPLETE_MARKER).touch()
            shutil.rmtree(target, ignore_errors=True)
            os.replace(downloaded, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def load(self, client_id: str, model_name: str, version: int) -> CachedModel:
        """Download if needed, load and verify; ModelNotServableError says why not."""
        started = time.perf_counter()
        try:
            local = self.local_copy(model_name, version)
        except ModelNotFoundError as exc:
            raise ModelNotServableError(f"client '{client_id}': {exc}") from None
        try:
            model = load_served(local, self.checked)
        except (ValueError, MlflowException) as exc:
            shutil.rmtree(local, ignore_errors=True)  # downloaded afresh next time
            text = str(getattr(exc, "message", exc)).strip()
            problem = text.splitlines()[0] if text else type(exc).__name__
            problem = problem.replace(f"{local}{os.sep}", "").replace(str(local), ".")
            raise ModelNotServableError(
                f"client '{client_id}': {model_name} v{version} (@champion) cannot be loaded: "
                f"compact model refused: {problem}"
            ) from None
        return CachedModel(
            model=model,
            version=int(version),
            nbytes=model_nbytes(model),
            load_seconds=time.perf_counter() - started,
        )
