"""A private workspace for the champion/lineage tests: own clients file, data, MLflow store and
Dagster instance, so their registry versions never mix with other test modules' (the session
MLflow store is shared, and other modules assert exact version numbers).

Partition keys must be ids of the fixture clients.yaml (the partitions are built from it at
import); the clients here reuse some of those ids with their own settings.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    EventLogRecord,
    RunRequest,
    build_multi_asset_sensor_context,
)

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
  - {client_id: juliet, features: [price, weight_g], sample_data: {products: 300, categories: 5}}
  - {client_id: foxtrot, features: [price, weight_g], sample_data: {products: 300, categories: 5}}
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
        from bettercat_assets.core.config import load_clients

        return load_clients(self.clients_file)

    @property
    def layout(self):
        from bettercat_assets.core.paths import DataLayout

        return DataLayout(self.data)

    @property
    def settings(self):
        from bettercat_assets.core.settings import TrackingSettings

        return TrackingSettings(tracking_uri=self.tracking_uri, artifact_root=self.artifact_root)

    def mlflow_client(self):
        from bettercat_assets.core import tracking

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

    def generate(self, client_id: str, seed: int = 3) -> Path:
        from bettercat_assets.core.generate import generate_client_data

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


def latest_record(instance: DagsterInstance, asset: str, partition: str) -> EventLogRecord:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {asset}[{partition}]"
    return records[0]


def metadata(instance: DagsterInstance, asset: str, partition: str) -> dict[str, object]:
    record = latest_record(instance, asset, partition)
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def sensor_tick(instance: DagsterInstance, cursor: str | None) -> tuple[list[RunRequest], str]:
    """One tick of `rescore_on_new_champion` as the daemon runs it, from a stored cursor."""
    from bettercat_assets.assets.registered_model import registered_model
    from bettercat_assets.definitions import defs
    from bettercat_assets.sensors import rescore_on_new_champion

    context = build_multi_asset_sensor_context(
        monitored_assets=[registered_model.key], instance=instance, cursor=cursor, definitions=defs
    )
    requests = list(rescore_on_new_champion(context) or [])
    context.update_cursor_after_evaluation()
    assert all(isinstance(r, RunRequest) for r in requests), requests
    return requests, context.cursor
