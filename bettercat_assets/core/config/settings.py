"""Environment-driven defaults shared by the CLI, the Dagster resources and the tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_PREFIX_ENV = "DATA_PREFIX"
HOME_ENV = "BETTERCAT_HOME"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
ARTIFACT_ROOT_ENV = "BETTERCAT_ARTIFACT_ROOT"


def default_home() -> Path:
    """Project state folder (MLflow store, Dagster home): $BETTERCAT_HOME or ./.bettercat."""
    return Path(os.environ.get(HOME_ENV) or ".bettercat").expanduser().resolve()


def default_data_prefix() -> Path:
    return Path(os.environ.get(DATA_PREFIX_ENV) or "data").expanduser().resolve()


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else a sqlite store in the project state folder."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{default_home() / 'mlflow.db'}"


def default_artifact_root() -> str | None:
    """Where new experiments keep artifacts; None lets an MLflow server decide."""
    if os.environ.get(ARTIFACT_ROOT_ENV):
        return os.environ[ARTIFACT_ROOT_ENV]
    if default_tracking_uri().startswith("sqlite:"):
        return (default_home() / "mlartifacts").as_uri()
    return None


@dataclass(frozen=True)
class TrackingSettings:
    """How to reach MLflow: the tracking/registry URI and the artifact root for new experiments."""

    tracking_uri: str
    artifact_root: str | None = None

    @classmethod
    def from_env(cls) -> TrackingSettings:
        return cls(tracking_uri=default_tracking_uri(), artifact_root=default_artifact_root())
