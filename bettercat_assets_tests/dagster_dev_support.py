"""`dagster dev` on a workspace of its own, driven only through GraphQL as the UI drives it.

Used by the end-to-end tests and by the benchmark's `tenants` section (`bench/tenants.py`):
a clients file, generated data, an MLflow store and a DAGSTER_HOME with the project's own
`deploy/dagster.local.yaml`, then "Materialize all" as a partition backfill.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bettercat_assets_tests.process_support import (
    RUN_FAILURE,
    ManagedProcess,
    free_port,
    graphql,
    launch_partition_backfill,
    runs,
    start_process,
    wait_for_webserver,
)

REPO = Path(__file__).resolve().parents[1]
ALL_ASSETS = (["training_data"], ["registered_model"], ["category_predictions"])
ACTIVE_RUN = frozenset({"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "MANAGED", "CANCELING"})

MATERIALIZATIONS = """
query Materializations($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    __typename
    ... on Asset { assetMaterializations { partition runId } }
  }
}
"""

BACKFILLS = """
{
  partitionBackfillsOrError(limit: 1000) {
    __typename
    ... on PartitionBackfills { results { id status } }
  }
}
"""

#: What GraphQL calls an AutomationConditionSensorDefinition (1.13 reports AUTO_MATERIALIZE).
AUTOMATION_SENSOR_TYPES = frozenset({"AUTO_MATERIALIZE", "AUTOMATION"})
#: `dayRange` keeps the query off the batch loader, which answers no ticks for these sensors.
AUTOMATION_TICKS = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        sensors {
          name
          sensorType
          sensorState { ticks(limit: 3, dayRange: 1) { timestamp status requestedAssetMaterializationCount } }
        }
      }
    }
  }
}
"""


@dataclass
class Workspace:
    """Where one `dagster dev` keeps everything: clients, data, MLflow store, Dagster home."""

    root: Path

    @property
    def clients_file(self) -> Path:
        return self.root / "clients.yaml"

    @property
    def data_prefix(self) -> Path:
        return self.root / "data"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        home = self.root / "home"
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.dagster_home),
            "BETTERCAT_CLIENTS_FILE": str(self.clients_file),
            "DATA_PREFIX": str(self.data_prefix),
            "BETTERCAT_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "BETTERCAT_ARTIFACT_ROOT": (home / "mlartifacts").as_uri(),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        env.pop("SPARK_REMOTE", None)
        return {**env, **(extra or {})}


def write_clients(ws: Workspace, doc: Mapping[str, object], seed: int = 3) -> list[str]:
    """Write `doc` as the workspace's clients.yaml and generate every client's sample data."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_all

    ws.root.mkdir(parents=True, exist_ok=True)
    ws.clients_file.write_text(yaml.safe_dump(dict(doc), sort_keys=False))
    registry = load_clients(ws.clients_file)
    generate_all(registry.clients.values(), DataLayout(ws.data_prefix), seed=seed)
    return registry.client_ids


def tiny_clients(n: int, seed: int = 0) -> dict[str, object]:
    """A clients.yaml document of `n` small clients: 300 to 1,000 products, 4 to 12 categories."""
    import random

    rng = random.Random(seed)
    features = ["price", "weight_g", "rating", "n_reviews", "length_cm", "color_code"]
    clients = [
        {
            "client_id": f"tenant_{i:04d}",
            "features": rng.sample(features, rng.randint(2, len(features))),
            "sample_data": {
                "products": rng.randint(300, 1000),
                "categories": rng.randint(4, 12),
                # Learnable catalogues: at the default noise a few small clients' models
                # do not beat the class-prior baseline, and their gate rightly fails. At 0.6
                # one of 200 still failed; at 0.3 every one of 200 beats it by >= 0.04.
                "noise": 0.3,
            },
        }
        for i in range(n)
    ]
    return {
        "defaults": {
            "model_params": {"n_estimators": 20, "min_samples_leaf": 3, "n_jobs": 1},
            "quality_gate": {"min_top5_accuracy": 0.2},
        },
        "clients": clients,
    }


def start_dagster_dev(
    ws: Workspace, extra_env: Mapping[str, str] | None = None
) -> tuple[str, ManagedProcess]:
    """`dagster dev` (webserver + daemon) on a free loopback port with the project's local
    instance config; returns its URL once the code location has loaded."""
    ws.dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", ws.dagster_home / "dagster.yaml")
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    proc = start_process(
        "dagster dev",
        [dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-m", "bettercat_assets.definitions"],
        env=ws.env(extra_env),
        log=ws.root / "dagster_dev.log",
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_webserver(url, processes=[proc])
    return url, proc


def materialize_all(url: str, client_ids: Sequence[str]) -> str:
    """The UI's "Materialize all" over every client partition: one partition backfill."""
    return launch_partition_backfill(url, ALL_ASSETS, client_ids)


def materializations(url: str, asset: str) -> list[dict]:
    node = graphql(url, MATERIALIZATIONS, {"path": [asset]})["assetOrError"]
    if node["__typename"] != "Asset":
        return []
    return node["assetMaterializations"]


def times_materialized(url: str, asset: str) -> Counter:
    """How often each partition of `asset` was materialized."""
    return Counter(m["partition"] for m in materializations(url, asset))


def backfills(url: str) -> list[dict]:
    result = graphql(url, BACKFILLS)["partitionBackfillsOrError"]
    assert result["__typename"] == "PartitionBackfills", result
    return result["results"]


def automation_ticks(url: str) -> list[dict]:
    """The latest ticks of every automation-condition sensor (newest first per sensor)."""
    result = graphql(url, AUTOMATION_TICKS)["repositoriesOrError"]
    assert result["__typename"] == "RepositoryConnection", result
    return [
        tick
        for repo in result["nodes"]
        for sensor in repo["sensors"]
        if sensor["sensorType"] in AUTOMATION_SENSOR_TYPES
        for tick in sensor["sensorState"]["ticks"]
    ]


def wait_until_idle(
    url: str,
    timeout: float,
    *,
    processes: Iterable[ManagedProcess] = (),
    interval: float = 5,
    until: Callable[[], bool] | None = None,
) -> list[dict]:
    """Wait until no backfill is in progress, no run is queued or running, and the automation
    sensor has evaluated since then and requested nothing; all runs.

    "Since then" is the first poll that found nothing busy (a backfill stays REQUESTED until the
    daemon's next pass marks it done), and after the last run's end. `until`, when given, must
    also hold: what the caller expects to have happened. The sensor's first tick after a
    backfill completes has been seen to request nothing and the next one to emit the re-scoring,
    so a wait that expects work names it rather than trusting one quiet tick.
    """
    processes = list(processes)
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while True:
        for proc in processes:
            proc.assert_alive()
        found = runs(url)
        busy = any(r["status"] in ACTIVE_RUN for r in found) or any(
            b["status"] == "REQUESTED" for b in backfills(url)
        )
        if busy:
            quiet_since = None
        else:
            last_end = max((r.get("endTime") or 0.0 for r in found), default=0.0)
            quiet_since = max(quiet_since or time.time(), last_end)
            after = [t for t in automation_ticks(url) if t["timestamp"] > quiet_since]
            quiet = after and all(t["requestedAssetMaterializationCount"] == 0 for t in after)
            if quiet and (until is None or until()):
                return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"still busy after {timeout:.0f}s: {found}")
        time.sleep(interval)


def failed_runs(found: Iterable[dict]) -> list[dict]:
    return [r for r in found if r["status"] in RUN_FAILURE]
