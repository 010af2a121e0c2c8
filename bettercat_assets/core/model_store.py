"""Saving forests to MLflow (skops + compact form) and loading them safely, once per process."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io
import skops.io.exceptions
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core import tracking
from bettercat_assets.core.compact_forest import CompactForest
from bettercat_assets.core.errors import ModelNotFoundError, UnsafeModelError
from bettercat_assets.core.settings import TrackingSettings

#: The only non-default type a fitted RandomForestClassifier needs; skops refuses anything else.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
COMPACT_ARTIFACT_PATH = "compact"
MODEL_NAME_IN_RUN = "model"
SKOPS_FILE = "model.skops"  # where mlflow.sklearn puts a skops-serialised model

#: Given explicitly: MLflow would otherwise spend ~10 s inferring them per model.
PIP_REQUIREMENTS = [
    f"scikit-learn=={sklearn.__version__}",
    f"skops=={skops.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
]


def log_forest(
    forest: RandomForestClassifier, compact: CompactForest, example: pd.DataFrame
) -> ModelInfo:
    """Log the sklearn model (skops) with its signature, plus the compact form in the same model."""
    signature = infer_signature(example, forest.predict(example))
    info = mlflow.sklearn.log_model(
        forest,
        name=MODEL_NAME_IN_RUN,
        signature=signature,
        pip_requirements=PIP_REQUIREMENTS,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    with tempfile.TemporaryDirectory() as tmp:
        compact.save(Path(tmp))
        MlflowClient().log_model_artifacts(info.model_id, tmp, artifact_path=COMPACT_ARTIFACT_PATH)
    return info


def _model_artifact_location(client: MlflowClient, model_name: str, version: int) -> str:
    mv = client.get_model_version(model_name, str(version))
    model_id = getattr(mv, "model_id", None) or mv.source.removeprefix("models:/").split("/")[0]
    return client.get_logged_model(model_id).artifact_location


def model_artifact_uri(settings: TrackingSettings, model_name: str, version: int) -> str:
    """Where a registered version's MLflow model lives (the logged model's artifact location).

    "No such version" is a ModelNotFoundError (a user error); a store that cannot be asked is a
    TrackingUnavailableError (transient, retried).
    """
    client = tracking.mlflow_client(settings)
    try:
        return _model_artifact_location(client, model_name, version)
    except mlflow.exceptions.MlflowException as exc:
        if tracking.is_not_found(exc):
            raise ModelNotFoundError(f"model '{model_name}' v{version}: {exc.message}") from None
        raise tracking.unavailable(settings, exc) from exc


def _download_model_artifact(
    settings: TrackingSettings, model_name: str, version: int, sub: str, dst: str
) -> Path:
    """Download one path of a registered version's MLflow model into `dst`."""
    # Downloads stay quiet; the bars would flood Spark and Dagster logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    location = model_artifact_uri(settings, model_name, version)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location.rstrip('/')}/{sub}",
        dst_path=dst,
        tracking_uri=settings.tracking_uri,
    )
    return Path(local)


def download_compact(settings: TrackingSettings, model_name: str, version: int, dst: str) -> Path:
    """Download a registered version's compact form into `dst`; returns the local folder.

    The one place that knows where the compact form sits inside a registered model: batch
    scoring downloads it in the driver and ships the folder to the Spark executors.
    """
    return _download_model_artifact(settings, model_name, version, COMPACT_ARTIFACT_PATH, dst)


_CACHE: dict[tuple[str, str, int], CompactForest] = {}
_CACHE_LOCK = threading.Lock()


def fetch_compact(
    settings: TrackingSettings, model_name: str, version: int, dst: str
) -> tuple[Path, CompactForest]:
    """Download a version's compact form into `dst` and verify it; UnsafeModelError if damaged."""
    local = download_compact(settings, model_name, version, dst)
    try:
        return local, CompactForest.load(local)
    except ValueError as exc:
        # The message names files in a temporary download folder: say where they are
        # in the registry instead.
        problem = str(exc).replace(f"{local}{os.sep}", "").replace(str(local), ".")
        raise UnsafeModelError(
            f"model '{model_name}' v{version}: compact model at "
            f"{model_artifact_uri(settings, model_name, version)}/"
            f"{COMPACT_ARTIFACT_PATH} is damaged or tampered with, refusing to score: "
            f"{problem}"
        ) from None


def load_compact(settings: TrackingSettings, model_name: str, version: int) -> CompactForest:
    """Download and load a version's compact form; cached, so once per process."""
    key = (settings.tracking_uri, model_name, int(version))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        with tempfile.TemporaryDirectory() as tmp:
            _, forest = fetch_compact(settings, model_name, version, tmp)
        _CACHE.clear()  # a process only ever needs the version it is using now
        _CACHE[key] = forest
        return forest


def load_sklearn(
    settings: TrackingSettings, model_name: str, version: int
) -> RandomForestClassifier:
    """Load the registered sklearn model with skops and OUR trusted-type list.

    MLflow's own loader takes the trusted list from the model's MLmodel file, which a tampered
    artifact controls, so it is bypassed here.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = _download_model_artifact(settings, model_name, version, SKOPS_FILE, tmp)
        try:
            forest = skops.io.load(local, trusted=SKOPS_TRUSTED_TYPES)
        except skops.io.exceptions.UntrustedTypesFoundException as exc:
            first = str(exc).strip().splitlines()[0]  # skops appends notes on later lines
            raise UnsafeModelError(
                f"model '{model_name}' v{version} holds untrusted types, refusing to load: {first}"
            ) from None
        except Exception as exc:  # not a skops zip, broken schema, ...
            raise UnsafeModelError(
                f"model '{model_name}' v{version}: {SKOPS_FILE} cannot be loaded safely: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from None
    if not isinstance(forest, RandomForestClassifier):
        raise UnsafeModelError(
            f"model '{model_name}' v{version}: {SKOPS_FILE} holds a {type(forest).__name__}, "
            "not a RandomForestClassifier"
        )
    return forest
