"""The Dagster asset graph in-process: materialize partitions, metadata, MLflow runs, isolation."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from dagster import DagsterInstance, instance_for_test

from bettercat_assets_tests.dagster_support import (
    ALL_STAGES,
    checks_by_name,
    failed_clients,
    materialize_clients,
    materialized_partitions,
    metadata,
    step_failure_messages,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def instance():
    with instance_for_test() as inst:
        yield inst


def _metadata(instance: DagsterInstance, asset: str, partition: str) -> dict[str, object]:
    return metadata(instance, asset, partition)


@pytest.fixture(scope="module")
def alpha_run(instance, sample_data, spark):
    result = materialize_clients(ALL_STAGES, "alpha", instance)
    assert result.success
    return result


def test_one_client_trains_and_scores_with_metadata(alpha_run, instance):
    data = _metadata(instance, "training_data", "alpha")
    assert data["rows"] > 0 and data["classes"] == 8 and len(data["sha256"]) == 64
    assert data["features"] == ["price", "weight_g", "n_reviews", "is_new"]

    model = _metadata(instance, "registered_model", "alpha")
    assert model["model_name"] == "alpha_model" and model["model_version"] >= 1
    assert model["mlflow_run"].startswith("http")
    for metric in ["accuracy", "top5_accuracy", "macro_f1", "log_loss", "train_rows", "test_rows"]:
        assert metric in model, metric
    assert model["champion_changed"] is True

    preds = _metadata(instance, "category_predictions", "alpha")
    assert preds["model_version"] == model["model_version"]
    assert preds["rows_written"] == 5 * preds["products_scored"]
    assert "| product_id" in preds["preview"]


def test_checks_pass_for_good_data(alpha_run):
    names = {n: e.passed for n, e in checks_by_name(alpha_run, "alpha").items()}
    assert set(names) >= {
        "schema",
        "null_share",
        "rows_and_classes",
        "unique_product_id",
        "quality_gate",
        "all_products_scored",
        "rows_per_product",
        "rank_order",
        "score_bounds",
        "model_is_champion",
    }
    assert all(names.values()), names


def test_one_dagster_run_gives_one_finished_mlflow_run(alpha_run, mlflow_client):
    run_id = alpha_run.run_id
    experiment = mlflow_client.get_experiment_by_name("bettercat/alpha")
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{run_id}'"
    )
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert run_id[:8] in runs[0].info.run_name and "alpha" in runs[0].info.run_name


def test_predictions_parquet_is_correct(alpha_run, instance, layout):
    path = _metadata(instance, "category_predictions", "alpha")["path"]
    table = ds.dataset(path, format="parquet").to_table().to_pandas()
    per_product = table.groupby("product_id")["rank"].agg(["count", "min", "max"])
    assert (per_product["count"] == 5).all() and (per_product["min"] == 0).all()
    with gzip.open(layout.predict_file("alpha"), "rt") as handle:
        assert len(per_product) == sum(1 for _ in handle) - 1


def test_bad_client_fails_alone(instance, layout, sample_data, spark):
    broken = layout.train_file("bravo")
    good = broken.read_bytes()
    broken.write_bytes(b"this is not gzip")
    try:
        bad = materialize_clients(ALL_STAGES, "bravo", instance, raise_on_error=False)
        assert not bad.success
        message = step_failure_messages(bad)[0]
        assert "bravo" in message and str(broken) in message and "gzip" in message
        assert set(failed_clients(bad)) == {"bravo"}
        assert not materialized_partitions(bad)
        ok = materialize_clients(ALL_STAGES, "delta", instance)
        assert ok.success
    finally:
        broken.write_bytes(good)


def test_range_run_isolates_a_bad_client(instance, layout, sample_data, spark, tmp_path):
    """One run over three clients: the broken one fails alone, the others materialize.

    A private MLflow store: other modules count the session store's versions.
    """
    from bettercat_assets.definitions import build_resources
    from bettercat_assets.resources import MlflowResource

    resources = {
        **build_resources(Path(os.environ["BETTERCAT_CLIENTS_FILE"])),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_root=(tmp_path / "art").as_uri(),
        ),
    }
    broken = layout.train_file("bravo")
    good = broken.read_bytes()
    broken.write_bytes(b"this is not gzip")
    try:
        run = materialize_clients(
            ALL_STAGES,
            ["alpha", "bravo", "charlie"],
            instance,
            resources=resources,
            raise_on_error=False,
        )
    finally:
        broken.write_bytes(good)
    assert not run.success
    reasons = failed_clients(run)
    assert set(reasons) == {"bravo"} and str(broken) in reasons["bravo"], reasons
    (message,) = step_failure_messages(run)
    assert "1 of 3 client(s) failed" in message and "bravo" in message
    done = materialized_partitions(run)
    assert {p for _, p in done} == {"alpha", "charlie"}
    assert {(a, p) for a in ALL_STAGES for p in ("alpha", "charlie")} == done
    assert set(checks_by_name(run, "charlie")) >= {"schema", "quality_gate", "rank_order"}
    assert all(e.passed for e in checks_by_name(run, "charlie").values())
