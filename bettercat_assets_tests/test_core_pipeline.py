"""The ML core end to end (no Dagster): train, register, score, compare with in-process sklearn."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from bettercat_assets.core.data.loading import load_scoring_table
from bettercat_assets.core.model.store import SKOPS_TRUSTED_TYPES, load_sklearn
from bettercat_assets.core.model.topk import top_k_frame
from bettercat_assets.core.scoring.spark_pass import predict_categories
from bettercat_assets.core.training.train import train_model

pytestmark = pytest.mark.integration

DAY = date(2026, 1, 15)


@pytest.fixture(scope="module")
def trained_twice(registry, layout, tracking_settings, sample_data):
    cfg = registry.get("charlie")
    first = train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    second = train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    return cfg, first, second


def test_registry_versions_increment_and_champion_moves(trained_twice, mlflow_client):
    cfg, first, second = trained_twice
    # Relative to what earlier tests of the session registered for this client.
    assert second.version == first.version + 1
    versions = mlflow_client.search_model_versions(f"name = '{cfg.model_name}'")
    assert max(int(v.version) for v in versions) == second.version
    assert first.version in {int(v.version) for v in versions}
    champion = mlflow_client.get_model_version_by_alias(cfg.model_name, "champion")
    assert int(champion.version) == second.version
    assert champion.tags["run_id"] == second.run_id


def test_training_metrics_params_and_tags_logged(trained_twice, mlflow_client, layout):
    cfg, first, _ = trained_twice
    run = mlflow_client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"charlie-{DAY.isoformat()}"
    for metric in ["accuracy", "top5_accuracy", "macro_f1", "log_loss", "prior_accuracy"]:
        assert metric in run.data.metrics, metric
    # counts are integers: MLflow params, shown as written
    params = run.data.params
    assert int(params["train_rows"]) + int(params["test_rows"]) == len(
        pd.read_csv(layout.train_file("charlie"))
    )
    assert params["n_classes"] == "12" and "n_classes" not in run.data.metrics
    assert run.data.tags["gate_metric"] == "top5_accuracy"
    # Real signal: top-5 accuracy well above chance (5 of 12 categories).
    assert run.data.metrics["top5_accuracy"] > 0.6
    assert run.data.params["rf_n_estimators"] == "15"
    assert run.data.tags["client_id"] == "charlie"
    assert len(run.data.tags["data_fingerprint"]) == 64
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    assert experiment.name == "bettercat/charlie"
    artifacts = {a.path for a in mlflow_client.list_artifacts(first.run_id, "diagnostics")}
    assert {
        "diagnostics/feature_importance.png",
        "diagnostics/per_category_metrics.csv",
        "diagnostics/confused_pairs.csv",
    } <= artifacts


def test_sklearn_model_loads_with_narrow_trusted_types(trained_twice, tracking_settings):
    cfg, first, _ = trained_twice
    import skops.io as sio

    forest = load_sklearn(tracking_settings, cfg.model_name, first.version)
    assert type(forest).__name__ == "RandomForestClassifier"
    assert sio.get_untrusted_types(data=sio.dumps(forest)) == SKOPS_TRUSTED_TYPES


def test_scoring_equals_in_process_reference(trained_twice, spark, layout, tracking_settings):
    cfg, _, second = trained_twice
    result = predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    assert result.model_version == second.version
    out = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()

    forest = load_sklearn(tracking_settings, cfg.model_name, second.version)
    inputs = load_scoring_table(cfg, layout.predict_file("charlie"), list(cfg.features))
    proba = forest.predict_proba(inputs[list(cfg.features)])
    expected = top_k_frame(
        inputs["product_id"].to_numpy(), proba, forest.classes_, 5, second.version
    )

    key = ["product_id", "rank"]
    got = out.sort_values(key).reset_index(drop=True)
    want = expected.sort_values(key).reset_index(drop=True)
    assert len(got) == len(inputs) * 5
    assert got["product_id"].tolist() == want["product_id"].tolist()
    np.testing.assert_allclose(got["pred_score"], want["pred_score"], atol=1e-6)
    # Same labels, except where the reference itself has a tie (scores within 1e-6): there any
    # order is a correct top-k, so check that our label's reference score equals the rank's.
    class_index = {c: i for i, c in enumerate(forest.classes_)}
    row = np.repeat(np.arange(len(inputs)), 5)
    ref_score_of_ours = proba[row, got["pred_label"].map(class_index).to_numpy()]
    np.testing.assert_allclose(ref_score_of_ours, want["pred_score"], atol=1e-6)
    differs = got["pred_label"] != want["pred_label"]
    assert differs.mean() < 0.05, "labels may differ only inside exact ties"
    assert set(got["model_version"]) == {second.version}
    assert dict(out.dtypes.astype(str)) == {
        "product_id": "object",
        "pred_label": "object",
        "pred_score": "float32",
        "rank": "int32",
        "model_version": "int32",
    }


def test_rescoring_same_date_replaces_output(trained_twice, spark, layout, tracking_settings):
    cfg, _, _ = trained_twice
    first = predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    files_before = sorted(p.name for p in first.output_dir.glob("*.parquet"))
    second = predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    out = ds.dataset(second.output_dir, format="parquet").to_table().to_pandas()
    assert len(out) == first.rows_written == second.rows_written
    assert not out.duplicated(["product_id", "rank"]).any()
    siblings = [p.name for p in second.output_dir.parent.iterdir()]
    assert siblings == [second.output_dir.name], siblings  # no staging/old leftovers
    assert files_before  # parquet part files were written


def test_scoring_an_older_version_on_request(trained_twice, spark, layout, tracking_settings):
    cfg, first, _ = trained_twice
    result = predict_categories(
        cfg,
        date(2026, 1, 16),
        spark=spark,
        layout=layout,
        settings=tracking_settings,
        version=first.version,
    )
    out = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()
    assert set(out["model_version"]) == {first.version}


def test_scoring_refuses_a_client_without_champion(
    registry, layout, tracking_settings, spark, sample_data
):
    """A model that never passed its gate does not serve: scoring always uses @champion."""
    import shutil

    from bettercat_assets.core.config.clients import QualityGate
    from bettercat_assets.core.config.errors import ModelNotFoundError

    base = registry.get("charlie")
    cfg = base.model_copy(
        update={"client_id": "charlie_nogate", "quality_gate": QualityGate(min_top5_accuracy=1.0)}
    )
    for src, dst in [
        (layout.train_file("charlie"), layout.train_file(cfg.client_id)),
        (layout.predict_file("charlie"), layout.predict_file(cfg.client_id)),
    ]:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    result = train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    assert not result.gate.passed and result.champion_version is None
    with pytest.raises(ModelNotFoundError, match="no @champion.*top5_accuracy"):
        predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    assert not layout.predictions_root(cfg.client_id).exists() or not any(
        layout.predictions_root(cfg.client_id).iterdir()
    )
