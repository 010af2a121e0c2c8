"""Saving forests to MLflow and loading them safely, once per process.

Layout of a training's run (since top-k serving, `LAYOUT`):

* logged model `model` (registered as `<client>_model`): the pyfunc of
  `core/model/pyfunc.py`, logged as code, carrying only the compact form
  (`artifacts/compact/`) and `artifacts/registration.json`. Serving and loading it never
  touch the sklearn forest;
* logged model `sklearn_model` (same run, not registered): the sklearn flavour (skops), for
  users who want the estimator itself. The registered model's tag `bettercat.sklearn_model_id`
  points at it.

Versions registered before (no `bettercat.layout` tag) are one sklearn logged model with the
compact form under `compact/`; every loader here reads both layouts.
"""

from __future__ import annotations

import os
import tempfile
import threading
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModel
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from bettercat_assets.core.config.errors import ModelNotFoundError, UnsafeModelError
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.model import pyfunc as serving_model
from bettercat_assets.core.model.compact_forest import CompactForest
from bettercat_assets.core.model.scoring_model import ScoringModel
from bettercat_assets.core.monitoring.reference import ReferenceProfile
from bettercat_assets.core.tracking import runs as tracking

if TYPE_CHECKING:  # scikit-learn and skops load only where a forest is logged or loaded
    from sklearn.ensemble import RandomForestClassifier

#: The only non-default type a fitted RandomForestClassifier needs; skops refuses anything else.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
MODEL_NAME_IN_RUN = "model"
SKLEARN_MODEL_NAME_IN_RUN = "sklearn_model"
SKOPS_FILE = "model.skops"  # where mlflow.sklearn puts a skops-serialised model
LAYOUT_TAG = "bettercat.layout"
LAYOUT = "pyfunc-topk-1"
SKLEARN_MODEL_TAG = "bettercat.sklearn_model_id"
#: The compact form inside the registered model: pyfunc layout, and before it.
COMPACT_ARTIFACT_PATH = f"artifacts/{serving_model.COMPACT_ARTIFACT}"
LEGACY_COMPACT_ARTIFACT_PATH = "compact"
REGISTRATION_ARTIFACT_DIR = "artifacts"
#: parts of a registered version `_download_model_artifact` can fetch
COMPACT_PART = "compact"
SKOPS_PART = "skops"
ENTRY_FILE = Path(__file__).with_name("pyfunc_entry.py")

#: Given explicitly: MLflow would otherwise spend ~10 s inferring them per model.
PIP_REQUIREMENTS = [
    f"scikit-learn=={_dist_version('scikit-learn')}",
    f"skops=={_dist_version('skops')}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
]
SERVING_PIP_REQUIREMENTS = [
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
    f"pyarrow=={_dist_version('pyarrow')}",
    f"numba=={_dist_version('numba')}",
]


def _log_sklearn(estimator: Any, example: pd.DataFrame, featurized: bool) -> ModelInfo:
    """The scikit-learn estimator (skops). With a featurizer it reads the featurizer's sparse
    output, so it gets no signature; the registered pyfunc is the model to serve."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = None if featurized else infer_signature(example, estimator.predict(example))
    return mlflow.sklearn.log_model(
        estimator,
        name=SKLEARN_MODEL_NAME_IN_RUN,
        signature=signature,
        pip_requirements=PIP_REQUIREMENTS,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )


def serving_example(
    example: pd.DataFrame, id_column: str, kinds: dict[str, str] | None = None
) -> pd.DataFrame:
    """The input example of the served model: made-up ids, then the feature rows (numbers as
    float64, text and categories as strings)."""
    ids = pd.Series([f"example-{i}" for i in range(len(example))], name=id_column)
    rows = example.reset_index(drop=True).copy()
    for name in rows.columns:
        numeric = (kinds or {}).get(name, "numeric") == "numeric"
        rows[name] = rows[name].astype(np.float64) if numeric else rows[name].astype(str)
    return pd.concat([ids, rows], axis=1)


def log_forest(
    estimator: Any,
    compact: CompactForest | ScoringModel,
    example: pd.DataFrame,
    *,
    id_column: str = "product_id",
    top_k: int = 5,
    profile: ReferenceProfile | None = None,
) -> ModelInfo:
    """Log the sklearn model, then the top-k pyfunc on the compact form (and the monitoring
    reference `profile` beside it); returns the pyfunc's ModelInfo, the one to register (then
    call `record_registration`)."""
    model = compact if isinstance(compact, ScoringModel) else ScoringModel(compact, None)
    sklearn_info = _log_sklearn(estimator, example, model.featurizer is not None)
    return log_compact(
        model,
        example,
        id_column=id_column,
        top_k=top_k,
        tags={SKLEARN_MODEL_TAG: sklearn_info.model_id},
        profile=profile,
    )


def log_compact(
    compact: CompactForest | ScoringModel,
    example: pd.DataFrame,
    *,
    id_column: str = "product_id",
    top_k: int = 5,
    tags: dict[str, str] | None = None,
    profile: ReferenceProfile | None = None,
) -> ModelInfo:
    """Log the top-k pyfunc on a compact model alone (the model that is registered and
    served), in the active run, with the monitoring reference `profile` beside it if given."""
    model = compact if isinstance(compact, ScoringModel) else ScoringModel(compact, None)
    with tempfile.TemporaryDirectory() as tmp:
        compact_dir = Path(tmp) / serving_model.COMPACT_ARTIFACT
        model.save(compact_dir)
        if profile is not None:
            profile.save(compact_dir)
        registration = Path(tmp) / serving_model.REGISTRATION_FILE
        registration.write_text(serving_model.registration_document(None, None))
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=str(ENTRY_FILE),
            artifacts={
                serving_model.COMPACT_ARTIFACT: str(compact_dir),
                serving_model.REGISTRATION_ARTIFACT: str(registration),
            },
            model_config={"id_column": id_column, "top_k": int(top_k)},
            signature=serving_model.serving_signature(
                model.feature_names, id_column, model.feature_kinds
            ),
            input_example=serving_example(example, id_column, model.feature_kinds),
            pip_requirements=SERVING_PIP_REQUIREMENTS,
            tags={LAYOUT_TAG: LAYOUT, **(tags or {})},
        )


def record_registration(info: ModelInfo, model_name: str, version: int) -> None:
    """Write the registry's version number into the logged model (`registration.json`), so the
    served model reports it in `model_version`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / serving_model.REGISTRATION_FILE
        path.write_text(serving_model.registration_document(model_name, int(version)))
        MlflowClient().log_model_artifacts(
            info.model_id, tmp, artifact_path=REGISTRATION_ARTIFACT_DIR
        )


def _logged_model(client: MlflowClient, model_name: str, version: int) -> LoggedModel:
    mv = client.get_model_version(model_name, str(version))
    model_id = getattr(mv, "model_id", None) or mv.source.removeprefix("models:/").split("/")[0]
    return client.get_logged_model(model_id)


def _ask_registry(settings: TrackingSettings, model_name: str, version: int, find):
    """`find(client)`, with "no such version" as ModelNotFoundError (a user error) and a store
    that cannot be asked as TrackingUnavailableError (transient, retried)."""
    client = tracking.mlflow_client(settings)
    try:
        return find(client)
    except mlflow.exceptions.MlflowException as exc:
        if tracking.is_not_found(exc):
            raise ModelNotFoundError(f"model '{model_name}' v{version}: {exc.message}") from None
        raise tracking.unavailable(settings, exc) from exc


def model_artifact_uri(settings: TrackingSettings, model_name: str, version: int) -> str:
    """Where a registered version's MLflow model lives (the logged model's artifact location)."""

    def find(client: MlflowClient) -> str:
        return _logged_model(client, model_name, version).artifact_location

    return _ask_registry(settings, model_name, version, find)


def is_serving_layout(settings: TrackingSettings, model_name: str, version: int) -> bool:
    """True for a version registered as the top-k pyfunc (False: the sklearn-only layout)."""

    def find(client: MlflowClient) -> bool:
        return _logged_model(client, model_name, version).tags.get(LAYOUT_TAG) == LAYOUT

    return _ask_registry(settings, model_name, version, find)


def compact_artifact_uri(settings: TrackingSettings, model_name: str, version: int) -> str:
    """The compact form's folder inside a registered version, whichever layout it has."""

    def find(client: MlflowClient) -> str:
        logged = _logged_model(client, model_name, version)
        sub = (
            COMPACT_ARTIFACT_PATH
            if logged.tags.get(LAYOUT_TAG) == LAYOUT
            else LEGACY_COMPACT_ARTIFACT_PATH
        )
        return f"{logged.artifact_location.rstrip('/')}/{sub}"

    return _ask_registry(settings, model_name, version, find)


def sklearn_artifact_uri(settings: TrackingSettings, model_name: str, version: int) -> str:
    """The sklearn MLflow model of a registered version: the run's `sklearn_model` (pyfunc
    layout) or the registered model itself (before)."""

    def find(client: MlflowClient) -> str:
        logged = _logged_model(client, model_name, version)
        sklearn_id = logged.tags.get(SKLEARN_MODEL_TAG)
        if logged.tags.get(LAYOUT_TAG) != LAYOUT or not sklearn_id:
            return logged.artifact_location
        return client.get_logged_model(sklearn_id).artifact_location

    return _ask_registry(settings, model_name, version, find)


def _download_model_artifact(
    settings: TrackingSettings, model_name: str, version: int, sub: str, dst: str
) -> Path:
    """Download one part (COMPACT_PART or SKOPS_PART) of a registered version into `dst`."""
    # Downloads stay quiet; the bars would flood Spark and Dagster logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if sub == COMPACT_PART:
        uri = compact_artifact_uri(settings, model_name, version)
    elif sub == SKOPS_PART:
        uri = f"{sklearn_artifact_uri(settings, model_name, version).rstrip('/')}/{SKOPS_FILE}"
    else:
        raise ValueError(f"unknown model part {sub!r}")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=dst, tracking_uri=settings.tracking_uri
    )
    return Path(local)


def download_compact(settings: TrackingSettings, model_name: str, version: int, dst: str) -> Path:
    """Download a registered version's compact form into `dst`; returns the local folder.

    The one place that knows where the compact form sits inside a registered model (either
    layout): batch scoring downloads it in the driver and ships the folder to the executors.
    """
    return _download_model_artifact(settings, model_name, version, COMPACT_PART, dst)


def download_serving_model(
    settings: TrackingSettings,
    model_name: str,
    version: int,
    dst: str,
    parts: tuple[str, ...] | None = None,
) -> Path:
    """Download a registered version's MLflow model (the top-k pyfunc) into `dst`: the whole
    model, or only `parts` of it (paths inside the model, e.g. `MLmodel`, `artifacts`);
    ModelNotFoundError when the version predates serving (sklearn-only layout)."""

    def find(client: MlflowClient) -> tuple[bool, str]:
        logged = _logged_model(client, model_name, version)
        return logged.tags.get(LAYOUT_TAG) == LAYOUT, logged.artifact_location

    servable, location = _ask_registry(settings, model_name, version, find)
    if not servable:
        raise ModelNotFoundError(
            f"{model_name} v{version} was registered before top-k serving (sklearn flavour "
            "only); train again to register a servable version"
        )
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if parts is None:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=dst, tracking_uri=settings.tracking_uri
        )
        return Path(local)
    for part in parts:
        target = Path(dst) / part
        target.parent.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location.rstrip('/')}/{part}",
            dst_path=str(target.parent),
            tracking_uri=settings.tracking_uri,
        )
    return Path(dst)


_CACHE: dict[tuple[str, str, int], ScoringModel] = {}
_CACHE_LOCK = threading.Lock()


def fetch_scoring_model(
    settings: TrackingSettings, model_name: str, version: int, dst: str
) -> tuple[Path, ScoringModel]:
    """Download a version's compact form (featurizer included) into `dst` and verify every
    part; UnsafeModelError if one is damaged or tampered with."""
    local = download_compact(settings, model_name, version, dst)
    try:
        return local, ScoringModel.load(local)
    except ValueError as exc:
        # The message names files in a temporary download folder: say where they are
        # in the registry instead.
        problem = str(exc).replace(f"{local}{os.sep}", "").replace(str(local), ".")
        raise UnsafeModelError(
            f"model '{model_name}' v{version}: compact model at "
            f"{compact_artifact_uri(settings, model_name, version)} is damaged or "
            f"tampered with, refusing to score: {problem}"
        ) from None


def fetch_compact(
    settings: TrackingSettings, model_name: str, version: int, dst: str
) -> tuple[Path, Any]:
    """`fetch_scoring_model`, returning the compact estimator (a CompactForest for forests)."""
    local, model = fetch_scoring_model(settings, model_name, version, dst)
    return local, model.estimator


def load_compact(settings: TrackingSettings, model_name: str, version: int) -> Any:
    """The compact estimator of a version (a CompactForest for forests); cached."""
    return load_scoring_model(settings, model_name, version).estimator


def load_scoring_model(settings: TrackingSettings, model_name: str, version: int) -> ScoringModel:
    """Download and load a version's compact form; cached, so once per process."""
    key = (settings.tracking_uri, model_name, int(version))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        with tempfile.TemporaryDirectory() as tmp:
            _, forest = fetch_scoring_model(settings, model_name, version, tmp)
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
    import skops.io
    import skops.io.exceptions
    from sklearn.ensemble import RandomForestClassifier

    with tempfile.TemporaryDirectory() as tmp:
        local = _download_model_artifact(settings, model_name, version, SKOPS_PART, tmp)
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
    from sklearn.linear_model import LogisticRegression

    if not isinstance(forest, RandomForestClassifier | LogisticRegression):
        raise UnsafeModelError(
            f"model '{model_name}' v{version}: {SKOPS_FILE} holds a {type(forest).__name__}, "
            "not a RandomForestClassifier"
        )
    return forest
