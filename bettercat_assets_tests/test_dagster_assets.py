"""The Dagster asset graph in-process: materialize partitions, metadata, MLflow runs, isolation."""

from __future__ import annotations

import gzip

import pyarrow.dataset as ds
import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test, materialize

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def instance():
    with instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def graph():
    from bettercat_assets.assets.category_predictions import category_predictions
    from bettercat_assets.assets.registered_model import registered_model
    from bettercat_assets.assets.training_data import training_data
    from bettercat_assets.definitions import build_resources

    return [training_data, registered_model, category_predictions], build_resources()


def _metadata(instance: DagsterInstance, asset: str, partition: str) -> dict[str, object]:
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {asset}[{partition}]"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def alpha_run(instance, graph, sample_data, spark):
    assets, resources = graph
    result = materialize(assets, partition_key="alpha", instance=instance, resources=resources)
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
    evaluations = alpha_run.get_asset_check_evaluations()
    names = {e.check_name: e.passed for e in evaluations}
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


def test_bad_client_fails_alone(instance, graph, layout, sample_data, spark):
    assets, resources = graph
    broken = layout.train_file("bravo")
    good = broken.read_bytes()
    broken.write_bytes(b"this is not gzip")
    try:
        bad = materialize(
            assets,
            partition_key="bravo",
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
        assert not bad.success
        failures = [e for e in bad.all_events if e.is_step_failure]
        message = failures[0].step_failure_data.error.message
        assert "bravo" in message and str(broken) in message and "gzip" in message
        ok = materialize(assets, partition_key="delta", instance=instance, resources=resources)
        assert ok.success
    finally:
        broken.write_bytes(good)
