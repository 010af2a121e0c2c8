"""Soak: re-materialize the same clients again and again through the `client_pipeline` job.

Five fixture clients in one range run, three times in a row, in-process, against a
private sqlite MLflow store and data prefix: versions go 1..3, each date's output is replaced
rather than duplicated, and disk use grows per iteration by one model version per client.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.dataset as ds
import pytest

from bettercat_assets_tests.dagster_support import ALL_STAGES, materialized_partitions
from bettercat_assets_tests.reliability_support import du_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The first five fixture clients: one contiguous range, as a backfill run covers them.
CLIENTS = ["alpha", "bravo", "charlie", "delta", "echo"]
ITERATIONS = 3
DAY = "2026-06-01"


def _local(uri: str) -> Path:
    return Path(urlparse(uri).path)


def test_repeated_materializations_replace_outputs_and_grow_by_one_version(
    tmp_path, registry, spark
):
    from dagster import Definitions, instance_for_test

    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.model.store import model_artifact_uri, sklearn_artifact_uri
    from bettercat_assets.core.tracking import runs as tracking
    from bettercat_assets.jobs import PIPELINE_JOB, build_jobs
    from bettercat_assets.partitions import range_tags
    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
    from bettercat_assets_tests.dagster_support import client_assets_def, day_config

    layout = DataLayout(tmp_path / "data")
    for cid in CLIENTS:
        generate_client_data(registry.get(cid), layout, seed=3)
    settings = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=(tmp_path / "mlartifacts").as_uri(),
    )
    artifact_root = _local(settings.artifact_root)
    assets = client_assets_def()
    defs = Definitions(
        assets=[assets],
        jobs=build_jobs(assets.partitions_def),
        resources={
            "clients": ClientsResource(
                clients_file=os.environ["BETTERCAT_CLIENTS_FILE"], data_prefix=str(layout.prefix)
            ),
            "mlflow": MlflowResource(
                tracking_uri=settings.tracking_uri, artifact_root=settings.artifact_root
            ),
            "spark": SparkResource(master="local[2]"),  # the session's Spark (getOrCreate)
        },
    )
    job = defs.resolve_job_def(PIPELINE_JOB)
    run_config = day_config(DAY)

    client = tracking.mlflow_client(settings)
    sizes = []  # per iteration: data prefix, artifact root, sqlite db, new versions' artifacts
    with instance_for_test() as instance:
        for iteration in range(1, ITERATIONS + 1):
            # One range run over the five clients, as a backfill runs them.
            result = job.execute_in_process(
                tags=range_tags(CLIENTS), instance=instance, run_config=run_config
            )
            assert result.success, iteration
            done = materialized_partitions(result)
            assert done == {(a, c) for a in ALL_STAGES for c in CLIENTS}, done
            new_version_bytes = 0
            for cid in CLIENTS:
                version = client.get_model_version(f"{cid}_model", str(iteration))
                model_dir = _local(model_artifact_uri(settings, f"{cid}_model", iteration))
                sklearn_dir = _local(sklearn_artifact_uri(settings, f"{cid}_model", iteration))
                run_dir = _local(client.get_run(version.run_id).info.artifact_uri)
                new_version_bytes += du_bytes(model_dir.parent, sklearn_dir.parent, run_dir.parent)
            sizes.append(
                {
                    "iteration": iteration,
                    "data": du_bytes(layout.prefix),
                    "artifacts": du_bytes(artifact_root),
                    "db": du_bytes(tmp_path / "mlflow.db"),
                    "new_versions": new_version_bytes,
                }
            )

    print("\nsoak disk use (bytes):")
    for row in sizes:
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))

    for cid in CLIENTS:
        model = f"{cid}_model"
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'"))
        assert versions == list(range(1, ITERATIONS + 1))
        assert int(tracking.champion_version(client, model).version) == ITERATIONS
        experiment = client.get_experiment_by_name(f"bettercat/{cid}")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == ITERATIONS
        assert {r.info.status for r in runs} == {"FINISHED"}

        # One output folder per date, replaced in place, nothing left beside it.
        root = layout.predictions_root(cid)
        assert sorted(p.name for p in root.iterdir()) == [f"date={DAY}"]
        table = ds.dataset(root / f"date={DAY}", format="parquet").to_table().to_pandas()
        products = registry.get(cid).sample_data.products
        assert not table.duplicated(["product_id", "rank"]).any()
        assert table["product_id"].nunique() == products - round(products * 0.8)
        assert set(table["model_version"]) == {ITERATIONS}

    # Disk: the data prefix stays flat (outputs are replaced), the artifact root grows by the
    # new versions' artifacts and by nothing else.
    first = sizes[0]
    for before, after in zip(sizes, sizes[1:], strict=False):
        grown = after["artifacts"] - before["artifacts"]
        assert grown == after["new_versions"], (before, after)
        assert abs(after["data"] - first["data"]) <= 0.02 * first["data"], (first, after)
    growth = [b["artifacts"] - a["artifacts"] for a, b in zip(sizes, sizes[1:], strict=False)]
    mean = sum(growth) / len(growth)
    assert all(abs(g - mean) <= 0.1 * mean for g in growth), growth
    assert first["artifacts"] == first["new_versions"]
