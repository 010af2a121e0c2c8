"""A private workspace for the champion/lineage tests: own clients file, data, MLflow store and
Dagster instance, so their registry versions never mix with other test modules' (the session
MLflow store is shared, and other modules assert exact version numbers).

The workspace's `client_assets` are partitioned by its own clients file
(`Workspace.assets_def`); `dagster_support` has the run and read-back helpers.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetsDefinition, DagsterInstance, ExecuteInProcessResult

from bettercat_assets_tests.dagster_support import (
    client_assets_def,
    latest_record,
    materialize_clients,
    metadata,
    rescore_requests,
)

__all__ = ["latest_record", "metadata"]

CLIENTS_YAML = """\
defaults:
  model_params: {n_estimators: 15, min_samples_leaf: 3, max_features: sqrt, n_jobs: 1, random_state: 7}
  top_k: 5
  quality_gate: {min_top5_accuracy: 0.3, max_top5_regression: 0.02}
  data_checks: {max_null_share: 0.2, min_rows: 50}
clients:
  # 12 categories: top-5 accuracy means something (with <= 5 categories it is always 1.0)
  - {client_id: golf, features: [price, weight_g, color_code, n_pages], sample_data: {products: 700, categories: 12}}
  - {client_id: india, features: [price, weight_g, color_code, n_pages], sample_data: {products: 700, categories: 12}}
  # 5 categories: judged on top-1 accuracy beyond chance, so the catalogues are learnable
  - {client_id: juliet, features: [price, weight_g], sample_data: {products: 300, categories: 5, noise: 0.2}}
  - {client_id: foxtrot, features: [price, weight_g], sample_data: {products: 300, categories: 5, noise: 0.2}}
"""


@dataclass(frozen=True)
class Workspace:
    root: Path
    clients_file: Path
    data: Path
    tracking_uri: str
    artifact_root: str
    dagster_home: Path

    @property
    def env(self) -> dict[str, str]:
        """What the CLI reads, pointed at this workspace."""
        return {
            "BETTERCAT_CLIENTS_FILE": str(self.clients_file),
            "DATA_PREFIX": str(self.data),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "BETTERCAT_ARTIFACT_ROOT": self.artifact_root,
            "BETTERCAT_HOME": str(self.root / "home"),
            "DAGSTER_HOME": str(self.dagster_home),
        }

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)

    @property
    def registry(self):
        from bettercat_assets.core.config.clients import load_clients

        return load_clients(self.clients_file)

    @property
    def layout(self):
        from bettercat_assets.core.config.paths import DataLayout

        return DataLayout(self.data)

    @property
    def settings(self):
        from bettercat_assets.core.config.settings import TrackingSettings

        return TrackingSettings(tracking_uri=self.tracking_uri, artifact_root=self.artifact_root)

    def mlflow_client(self):
        from bettercat_assets.core.tracking import runs as tracking

        return tracking.mlflow_client(self.settings)

    def resources(self) -> dict[str, object]:
        from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource

        return {
            "clients": ClientsResource(
                clients_file=str(self.clients_file), data_prefix=str(self.data)
            ),
            "mlflow": MlflowResource(
                tracking_uri=self.tracking_uri, artifact_root=self.artifact_root
            ),
            "spark": SparkResource(master="local[2]", spark_config={"spark.driver.memory": "1g"}),
        }

    @property
    def assets_def(self) -> AssetsDefinition:
        """`client_assets` partitioned by this workspace's clients."""
        return client_assets_def(str(self.clients_file))

    def materialize(
        self,
        selection: list[str],
        client_ids: str | list[str],
        instance: DagsterInstance,
        **kwargs: object,
    ) -> ExecuteInProcessResult:
        """One in-process run of the `selection` stages for the clients, with these resources."""
        return materialize_clients(
            selection,
            client_ids,
            instance,
            resources=self.resources(),
            clients_file=self.clients_file,
            **kwargs,
        )

    def generate(self, client_id: str, seed: int = 3) -> Path:
        from bettercat_assets.core.data.generate import generate_client_data

        return generate_client_data(self.registry.get(client_id), self.layout, seed).train_file


def make_workspace(root: Path) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    clients = root / "clients.yaml"
    clients.write_text(CLIENTS_YAML, encoding="utf-8")
    (root / "dagster").mkdir(exist_ok=True)
    return Workspace(
        root=root,
        clients_file=clients,
        data=root / "data",
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=(root / "mlartifacts").as_uri(),
        dagster_home=root / "dagster",
    )


def shuffle_labels(path: Path, label: str, seed: int = 0) -> None:
    """Rewrite a training file with its labels permuted: same classes, no signal."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="gzip")
    frame[label] = np.random.default_rng(seed).permutation(frame[label].to_numpy())
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))


def rescore_tick(ws: Workspace, instance: DagsterInstance, cursor: object | None):
    """One tick of the `rescore_on_new_champion` automation sensor, from a stored cursor: the
    clients it asks to re-score and the cursor for the next tick."""
    return rescore_requests(instance, cursor, ws.clients_file, ws.resources())
