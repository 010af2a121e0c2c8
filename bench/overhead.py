"""Section 4: the fixed cost of one client, and a backfill of tiny clients through Dagster.

The backfill runs the `client_pipeline` job in-process, one partition at a time, on one
Spark session (started before, timed apart). One client is broken on purpose (its training
file is not gzip): it must fail alone.
"""

from __future__ import annotations

import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from .workspace import REPO, Workspace, write_clients_file

TINY_FEATURES = ["price", "weight_g", "n_reviews", "rating", "is_new"]
BROKEN_CLIENT = "broken_client"
GOAL_PER_CLIENT_S = 5.0


def tiny_client_ids(m: int) -> list[str]:
    return [f"tiny_{i:03d}" for i in range(m)]


def write_backfill_clients(
    ws: Workspace, m: int, products: int = 1000, categories: int = 5
) -> Path:
    """A clients file with `m` tiny clients plus the broken one; generates their data."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.data.generate import generate_client_data

    sample = {"products": products, "categories": categories}
    entries = [
        {"client_id": cid, "features": TINY_FEATURES, "sample_data": sample}
        for cid in [*tiny_client_ids(m), BROKEN_CLIENT]
    ]
    path = write_clients_file(ws.clients_file, entries)
    registry = load_clients(path)
    for cid in registry.client_ids:
        generate_client_data(registry.get(cid), ws.layout, seed=7)
    # the broken client: a training file that is plain text, not gzip
    train = ws.layout.train_file(BROKEN_CLIENT)
    train.write_text(gzip.decompress(train.read_bytes()).decode())
    return path


def run_backfill(client_ids: list[str], spark_master: str = "local[2]") -> dict[str, Any]:
    """Run `client_pipeline` per partition in this process; the env must name the workspace.

    Returns per-client wall times, per-step means and which clients failed.
    """
    from dagster import DagsterInstance

    from bettercat_assets.core.spark.session import build_spark_session

    t0 = time.perf_counter()
    spark = build_spark_session(master=spark_master)
    spark.range(1).count()
    spark_start = time.perf_counter() - t0

    t0 = time.perf_counter()
    from bettercat_assets.definitions import build_definitions

    defs = build_definitions()
    import_defs = time.perf_counter() - t0
    job = defs.resolve_job_def("client_pipeline")
    day = date(2026, 1, 15).isoformat()
    run_config = {"ops": {"client_assets": {"config": {"day": day}}}}
    runs: dict[str, dict[str, Any]] = {}
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        instance = DagsterInstance.local_temp(tmp)
        for cid in client_ids:
            t0 = time.perf_counter()
            result = job.execute_in_process(
                partition_key=cid, instance=instance, raise_on_error=False, run_config=run_config
            )
            wall = time.perf_counter() - t0
            failure = ""
            if not result.success:
                failures = [e for e in result.all_events if e.is_step_failure]
                failure = failures[0].step_failure_data.error.message.strip() if failures else "?"
            runs[cid] = {"success": result.success, "wall_s": wall, "failure": failure[:300]}
            if result.success:
                for stat in instance.get_run_step_stats(result.run_id):
                    if stat.end_time and stat.start_time:
                        steps.setdefault(stat.step_key, []).append(stat.end_time - stat.start_time)
        instance.dispose()
    good = [r["wall_s"] for r in runs.values() if r["success"]]
    return {
        "spark_start_s": spark_start,
        "import_definitions_s": import_defs,
        "runs": runs,
        "succeeded": sum(r["success"] for r in runs.values()),
        "failed": sorted(c for c, r in runs.items() if not r["success"]),
        "first_client_s": good[0] if good else None,
        "mean_client_s": statistics.mean(good) if good else None,
        "mean_client_after_first_s": statistics.mean(good[1:]) if len(good) > 1 else None,
        "median_client_s": statistics.median(good) if good else None,
        "step_mean_s": {k: statistics.mean(v) for k, v in steps.items()},
    }


def time_python(code: str, env: dict[str, str], repeats: int = 2) -> float:
    """Best wall time of `python -c code` in a fresh process (interpreter start included)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, check=True, capture_output=True
        )
        best = min(best, time.perf_counter() - t0)
    return best


def fixed_costs(ws: Workspace) -> dict[str, Any]:
    """MLflow store creation, log_model + register of a tiny model, an empty Dagster run.

    Runs in a process that has already imported everything, so imports are not counted.
    """
    import mlflow
    import numpy as np
    import pandas as pd
    from dagster import DagsterInstance, job, op
    from sklearn.ensemble import RandomForestClassifier

    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.model.forest_conversion import compact_from_sklearn
    from bettercat_assets.core.model.store import log_forest
    from bettercat_assets.core.tracking import runs as tracking

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = TrackingSettings(
            tracking_uri=f"sqlite:///{tmp}/fresh.db", artifact_root=Path(tmp, "art").as_uri()
        )
        t0 = time.perf_counter()
        client = tracking.mlflow_client(settings)
        client.search_experiments(max_results=1)
        out["mlflow_new_sqlite_store_s"] = time.perf_counter() - t0

        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.normal(size=(200, 5)), columns=[f"f{i}" for i in range(5)])
        y = rng.integers(0, 5, size=200).astype(str)
        forest = RandomForestClassifier(n_estimators=10, min_samples_leaf=5, random_state=0)
        forest.fit(x, y)
        compact = compact_from_sklearn(forest)
        mlflow.set_tracking_uri(settings.tracking_uri)
        experiment = client.create_experiment("bench", artifact_location=settings.artifact_root)
        times = []
        for _ in range(2):  # the first call pays one-off MLflow initialisation
            t0 = time.perf_counter()
            with mlflow.start_run(experiment_id=experiment):
                info = log_forest(forest, compact, x.head(5))
                mlflow.register_model(info.model_uri, "bench_tiny")
            times.append(time.perf_counter() - t0)
        out["mlflow_log_and_register_first_s"] = times[0]
        out["mlflow_log_and_register_s"] = times[1]

        @op
        def noop() -> None:
            return None

        @job
        def empty_job() -> None:
            noop()

        Path(tmp, "dagster").mkdir()
        instance = DagsterInstance.local_temp(str(Path(tmp, "dagster")))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            assert empty_job.execute_in_process(instance=instance).success
            times.append(time.perf_counter() - t0)
        instance.dispose()
        out["dagster_empty_run_first_s"] = times[0]
        out["dagster_empty_run_s"] = min(times[1:])
    return out
