"""End to end through `dagster dev`: UI-style backfill -> champions -> sensor -> scoring runs.

Starts the real webserver + daemon (QueuedRunCoordinator from deploy/dagster.local.yaml) on a
free port, with its own DAGSTER_HOME, MLflow store and data prefix for three fixture clients,
and drives it only through GraphQL, as the UI does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
#: delta has 3 categories: fewer than top_k=5 rows per product.
E2E_CLIENTS = ["alpha", "delta", "echo"]
BACKFILL_TIMEOUT = 8 * 60
SCORING_TIMEOUT = 6 * 60

MINIMAL_DAGSTER_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
telemetry:
  enabled: false
"""

# The UI's "Materialize all" on assets sharing one partitions definition sends exactly these
# params (assetSelection + partitionNames, fromFailure false) to this mutation.
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status error { message } }
    ... on PythonError { message }
  }
}
"""

PARTITION_KEYS = """
query Keys($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode { partitionKeys }
  }
}
"""

RUNS = """
query Runs($job: String!) {
  runsOrError(filter: {pipelineName: $job}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""

WORKSPACE = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

SENSOR_TICKS = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        sensors { name sensorState { status ticks(limit: 5) { status timestamp runIds } } }
      }
    }
  }
}
"""


@dataclass
class DagsterDev:
    url: str
    data_prefix: Path
    categories: dict[str, int]
    log: Path

    def graphql(self, query: str, **variables: object) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = json.load(response)
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_clients_file(path: Path) -> dict[str, int]:
    """The fixture clients file cut down to E2E_CLIENTS; returns each client's category count."""
    doc = yaml.safe_load((FIXTURES / "clients.yaml").read_text())
    doc["clients"] = [c for c in doc["clients"] if c["client_id"] in E2E_CLIENTS]
    assert [c["client_id"] for c in doc["clients"]] == E2E_CLIENTS
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return {c["client_id"]: c["sample_data"]["categories"] for c in doc["clients"]}


def _wait_until_up(proc: subprocess.Popen, dev: DagsterDev, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode}:\n{dev.log_tail()}")
        try:
            with urllib.request.urlopen(f"{dev.url}/server_info", timeout=5):
                pass
            entries = dev.graphql(WORKSPACE)["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
            time.sleep(2)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            assert not errors, errors
            return
        time.sleep(2)
    pytest.fail(f"dagster dev did not come up in {timeout}s:\n{dev.log_tail()}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop dagster dev and everything it started (webserver, daemon, code server, runs)."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; give the rest of the group a moment, then make sure.
        time.sleep(1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        return


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> Iterator[DagsterDev]:
    from bettercat_assets.core.config import load_clients
    from bettercat_assets.core.generate import generate_all
    from bettercat_assets.core.paths import DataLayout

    root = tmp_path_factory.mktemp("dagster-dev")
    clients_file = root / "clients.yaml"
    categories = _write_clients_file(clients_file)
    data_prefix, home, dagster_home = root / "data", root / "home", root / "dagster_home"
    dagster_home.mkdir(parents=True)
    # Own data and MLflow store: other tests of the session write models and predictions for
    # the same client ids into the session's.
    generate_all(load_clients(clients_file).clients.values(), DataLayout(data_prefix), seed=3)

    instance_yaml = REPO / "deploy" / "dagster.local.yaml"
    if instance_yaml.exists():
        shutil.copy(instance_yaml, dagster_home / "dagster.yaml")
    else:
        (dagster_home / "dagster.yaml").write_text(MINIMAL_DAGSTER_YAML)

    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "BETTERCAT_CLIENTS_FILE": str(clients_file),
        "DATA_PREFIX": str(data_prefix),
        "BETTERCAT_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BETTERCAT_ARTIFACT_ROOT": (home / "mlartifacts").as_uri(),
        # Each scoring run starts its own Spark driver: keep them small on a shared machine.
        "BETTERCAT_SPARK_CONF_SPARK__DRIVER__MEMORY": "1g",
        "BETTERCAT_SPARK_CONF_SPARK__UI__ENABLED": "false",
        "BETTERCAT_SPARK_CONF_SPARK__SQL__SHUFFLE__PARTITIONS": "2",
    }
    port = _free_port()
    log = root / "dagster_dev.log"
    dev = DagsterDev(f"http://127.0.0.1:{port}", data_prefix, categories, log)
    dagster = Path(sys.executable).with_name("dagster")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [dagster, "dev", "-h", "127.0.0.1", "-p", str(port)]
            + ["-m", "bettercat_assets.definitions"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_until_up(proc, dev)
        yield dev
    finally:
        _stop(proc)


def _runs(dev: DagsterDev, job: str) -> list[dict]:
    result = dev.graphql(RUNS, job=job)["runsOrError"]
    assert result["__typename"] == "Runs", result
    for run in result["results"]:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return result["results"]


def _sensor_ticks(dev: DagsterDev, name: str) -> list[dict]:
    repos = dev.graphql(SENSOR_TICKS)["repositoriesOrError"]["nodes"]
    sensors = [s for repo in repos for s in repo["sensors"] if s["name"] == name]
    assert len(sensors) == 1, sensors
    assert sensors[0]["sensorState"]["status"] == "RUNNING"
    return sensors[0]["sensorState"]["ticks"]


def test_ui_backfill_trains_every_client_and_the_sensor_rescores_each_once(dagster_dev):
    dev = dagster_dev
    keys = dev.graphql(PARTITION_KEYS, path=["registered_model"])["assetNodeOrError"]
    assert sorted(keys["partitionKeys"]) == sorted(E2E_CLIENTS), keys

    launched = dev.graphql(
        LAUNCH_BACKFILL,
        backfillParams={
            "assetSelection": [{"path": ["training_data"]}, {"path": ["registered_model"]}],
            "partitionNames": keys["partitionKeys"],
            "fromFailure": False,
            "tags": [],
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    start = time.monotonic()
    status = None
    while time.monotonic() - start < BACKFILL_TIMEOUT:
        backfill = dev.graphql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        status = backfill["status"]
        if status in ("COMPLETED", "COMPLETED_SUCCESS"):
            break
        if status in ("FAILED", "COMPLETED_FAILED", "CANCELED", "CANCELING", "FAILING"):
            failed = [r for r in _runs(dev, "__ASSET_JOB") if r["status"] != "SUCCESS"]
            pytest.fail(f"backfill {status}: {backfill['error']} {failed}\n{dev.log_tail()}")
        time.sleep(5)
    else:
        pytest.fail(f"backfill still {status} after {BACKFILL_TIMEOUT}s\n{dev.log_tail()}")
    print(f"backfill completed in {time.monotonic() - start:.0f}s")

    # The sensor (running by default) requests one score_clients run per new champion.
    start = time.monotonic()
    while True:
        runs = _runs(dev, "score_clients")
        bad = [r for r in runs if r["status"] in ("FAILURE", "CANCELED", "CANCELING")]
        assert not bad, f"scoring runs failed: {bad}\n{dev.log_tail()}"
        done = [r for r in runs if r["status"] == "SUCCESS"]
        if len(done) >= len(E2E_CLIENTS):
            break
        if time.monotonic() - start > SCORING_TIMEOUT:
            pytest.fail(f"scoring runs after {SCORING_TIMEOUT}s: {runs}\n{dev.log_tail()}")
        time.sleep(5)
    print(f"scoring runs succeeded {time.monotonic() - start:.0f}s after the backfill")

    # One more sensor tick after everything finished must not request anything new.
    all_done = time.time()
    deadline = time.monotonic() + 90
    while not any(t["timestamp"] > all_done for t in _sensor_ticks(dev, "rescore_on_new_champion")):
        assert time.monotonic() < deadline, "no sensor tick after the scoring runs finished"
        time.sleep(3)
    runs = _runs(dev, "score_clients")
    assert sorted(r["tags"].get("dagster/partition") for r in runs) == sorted(E2E_CLIENTS), runs
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    assert {r["tags"].get("dagster/sensor_name") for r in runs} == {"rescore_on_new_champion"}

    for client_id in E2E_CLIENTS:
        root = dev.data_prefix / "products_categories" / f"client_id={client_id}"
        days = sorted(root.glob("date=*"))
        assert len(days) == 1, (client_id, days)
        table = ds.dataset(days[0], format="parquet").to_table().to_pandas()
        assert len(table), client_id
        rows = table.groupby("product_id")["rank"].agg(["count", "min", "max"])
        expected = min(5, dev.categories[client_id])
        assert (rows["count"] == expected).all(), (client_id, rows["count"].value_counts())
        assert (rows["min"] == 0).all() and (rows["max"] == expected - 1).all(), client_id
