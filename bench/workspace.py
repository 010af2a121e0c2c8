"""A throw-away bettercat workspace for the bench: data prefix, sqlite MLflow, clients file.

Everything lives under one directory; `env()` gives the variables a child process (and the
Spark Python workers it starts) needs to see the same workspace.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bettercat_assets.core.config.clients import ClientConfig, SampleData, load_clients
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings

REPO = Path(__file__).resolve().parent.parent
PROJECT_CLIENTS_FILE = REPO / "clients.yaml"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root / "data")

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def settings(self) -> TrackingSettings:
        return TrackingSettings(
            tracking_uri=f"sqlite:///{self.home / 'mlflow.db'}",
            artifact_root=(self.home / "mlartifacts").as_uri(),
        )

    @property
    def clients_file(self) -> Path:
        return self.root / "clients.yaml"

    def env(self, **extra: str) -> dict[str, str]:
        """The current environment pointed at this workspace (for child processes)."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.pop("SPARK_REMOTE", None)
        env.update(
            {
                "BETTERCAT_HOME": str(self.home),
                "DATA_PREFIX": str(self.root / "data"),
                "MLFLOW_TRACKING_URI": self.settings.tracking_uri,
                "BETTERCAT_ARTIFACT_ROOT": self.settings.artifact_root or "",
                "BETTERCAT_CLIENTS_FILE": str(self.clients_file),
                "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable,
                "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                "PYTHONPATH": os.pathsep.join(
                    p for p in [str(REPO), env.get("PYTHONPATH", "")] if p
                ),
                "DAGSTER_HOME": str(self.home / "dagster"),
                "SPARK_MASTER": "local[2]",
                **extra,
            }
        )
        (self.home / "dagster").mkdir(parents=True, exist_ok=True)
        return env

    def apply_env(self) -> None:
        os.environ.update(self.env())


def project_defaults() -> dict[str, Any]:
    """The `defaults` of the project's clients.yaml (model params, top_k, gate, checks)."""
    return load_clients(PROJECT_CLIENTS_FILE).document.defaults.model_dump()


def bench_client(
    client_id: str, features: list[str], model_params: dict[str, Any] | None = None
) -> ClientConfig:
    """A client with the project's defaults (clients.yaml), as `load_clients` would build it,
    except that it registers the evaluated split model (`refit_on_all_rows: false`): the bench
    scores the registered model on the training's own test split, which a refit has seen."""
    d = project_defaults()
    return ClientConfig(
        client_id=client_id,
        features=tuple(features),
        model_params={**d["model_params"], **(model_params or {})},
        top_k=d["top_k"],
        test_size=d["test_size"],
        quality_gate=d["quality_gate"],
        data_checks=d["data_checks"],
        sample_data=SampleData(),
        refit_on_all_rows=False,
    )


def write_clients_file(
    path: Path, entries: list[dict[str, Any]], defaults: dict[str, Any] | None = None
) -> Path:
    """Write a clients.yaml with the project's defaults (or `defaults`) and `entries`."""
    doc = {"defaults": defaults or project_defaults(), "clients": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    load_clients(path)  # validate now rather than in a child
    return path
