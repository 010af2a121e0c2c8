"""Scoring through Dagster on a standalone Spark cluster: a master and two workers on loopback.

`dagster asset materialize` runs in its own process with `SPARK_MASTER=spark://...`, so its
Spark driver is not the session's local one (a Python process has one SparkContext). The run
asks for one 1-core executor per worker and waits for both before scheduling; the input is
split into several partitions. The master's and the workers' JSON APIs say which executor ran
on which worker, the application's event log how many tasks each executor ran. The output
must equal the local session's scoring of the same client with the same model.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date

import pandas as pd
import pyarrow.dataset as ds
import pytest

from bettercat_assets_tests.process_support import wait_until
from bettercat_assets_tests.reliability_support import (
    BIN,
    REPO,
    subprocess_env,
    write_clients_file,
)
from bettercat_assets_tests.spark_cluster import (
    HOST,
    spark_cluster,
    tasks_per_executor,
    wait_until_gone,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CID = "cluster_score"
DAY = date(2026, 4, 1)
REFERENCE_DAY = date(2026, 4, 2)
WORKERS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-cluster")
    with spark_cluster(root, workers=WORKERS, wait=False) as running:  # JVMs boot meanwhile
        yield running
    # Nothing of the cluster is left: masters, workers, executors, their Python workers.
    left = wait_until_gone(set(running.process_groups()))
    assert not left, f"still running after the cluster stopped: {left}"


@pytest.fixture(scope="module")
def cluster_world(tmp_path_factory, tracking_settings):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("cluster-data")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {CID}, features: [price, weight_g, rating], "
            "sample_data: {products: 3000, categories: 7}}"
        ],
    )
    registry = load_clients(clients_file)
    layout = DataLayout(root / "data")
    generate_client_data(registry.get(CID), layout, seed=11)
    train_model(registry.get(CID), DAY, layout=layout, settings=tracking_settings)
    return root, registry, layout


def _materialize_on(cluster, root, registry, layout) -> subprocess.CompletedProcess:
    events = root / "spark-events"
    events.mkdir(exist_ok=True)
    spark_conf = {
        "spark.executor.cores": "1",
        "spark.executor.memory": "512m",
        "spark.cores.max": str(WORKERS),
        "spark.driver.memory": "512m",
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        # Schedule only once both executors are up, and give each of them tasks.
        "spark.scheduler.minRegisteredResourcesRatio": "1.0",
        "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        "spark.sql.files.maxPartitionBytes": "8k",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compress": "false",
    }
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(exist_ok=True)
    env = subprocess_env(
        SPARK_MASTER=cluster.master_url,
        SPARK_LOCAL_IP=HOST,
        BETTERCAT_SPARK_CONF=json.dumps(spark_conf),
        BETTERCAT_CLIENTS_FILE=str(registry.path),
        DATA_PREFIX=str(layout.prefix),
        DAGSTER_HOME=str(dagster_home),
    )
    run_config = {"ops": {"client_assets": {"config": {"day": DAY.isoformat()}}}}
    return subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "bettercat_assets.definitions"]
        + ["--select", "category_predictions", "--partition", CID]
        + ["--config-json", json.dumps(run_config)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _frame(path) -> pd.DataFrame:
    table = ds.dataset(path, format="parquet").to_table().to_pandas()
    return table.sort_values(["product_id", "rank"]).reset_index(drop=True)


def test_scoring_through_dagster_runs_on_both_workers_and_matches_local(
    cluster, cluster_world, spark, tracking_settings
):
    from bettercat_assets.core.scoring.spark_pass import predict_categories

    root, registry, layout = cluster_world
    cluster.wait_ready()
    done = _materialize_on(cluster, root, registry, layout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    # The master saw the application finish (it learns so shortly after the driver exits), with
    # both workers registered.
    def finished() -> list[dict]:
        return [a for a in cluster.master_state()["completedapps"] if a["name"] == "bettercat"]

    try:
        wait_until(finished, 60, "the application completed on the master", interval=0.5)
    except TimeoutError:
        raise AssertionError(
            f"{cluster.master_state()}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        ) from None
    state = cluster.master_state()
    [app] = finished()
    assert app["state"] == "FINISHED", app
    assert len([w for w in state["workers"] if w["state"] == "ALIVE"]) == WORKERS

    # Which executor ran on which worker, then the tasks each executor ran. A worker moves an
    # executor to its finished list a moment after the application ends, so wait for every
    # executor that ran tasks to be listed by some worker.
    tasks = tasks_per_executor(root / "spark-events", app["id"])

    def executors_by_worker() -> dict[str, set[str]]:
        listed = {}
        for ui in cluster.worker_uis:
            worker = cluster.worker_state(ui)
            entries = worker.get("finishedexecutors", []) + worker.get("executors", [])
            listed[ui] = {str(e["id"]) for e in entries if e["appid"] == app["id"]}
        return listed

    def all_attributed() -> bool:
        return set(tasks) <= set().union(*executors_by_worker().values())

    try:
        wait_until(all_attributed, 30, "workers list every executor", interval=0.5)
    except TimeoutError:
        raise AssertionError((executors_by_worker(), tasks)) from None
    executors_of = executors_by_worker()
    per_worker = {ui: sum(tasks.get(e, 0) for e in ids) for ui, ids in executors_of.items()}
    print(f"\ntasks per worker on {cluster.master_url}: {per_worker}")
    assert all(per_worker.values()), (per_worker, executors_of, tasks)
    assert sum(per_worker.values()) == sum(tasks.values()), (per_worker, tasks)

    # Same rows as the local session's scoring of the same client and model.
    cfg = registry.get(CID)
    on_cluster = _frame(layout.predictions_dir(CID, DAY))
    reference = predict_categories(
        cfg, REFERENCE_DAY, spark=spark, layout=layout, settings=tracking_settings
    )
    assert len(on_cluster) == reference.rows_written > 0
    pd.testing.assert_frame_equal(on_cluster, _frame(reference.output_dir))
    lineage = json.loads((layout.predictions_dir(CID, DAY) / "_lineage.json").read_text())
    assert lineage["model_version"] == reference.model_version and lineage["dagster_run_id"]
