"""A client with at most 5 categories (top-5 accuracy is 1.0 for any model there) gets a gate
that can fail: top-1 accuracy against the most-frequent-category baseline, beyond chance.
Trained for real (MLflow store of the session), a 3- and a 5-category client: learnable labels
pass, shuffled labels fail, and MLflow, Dagster's metadata and `bettercat show` say which metric
judged."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner

from bettercat_assets_tests.lifecycle_support import shuffle_labels
from bettercat_assets_tests.workspace_support import generated_workspace

pytestmark = pytest.mark.integration

DAY = date(2026, 12, 7)
CLIENTS = """\
defaults:
  model_params: {n_estimators: 15, min_samples_leaf: 3, max_features: sqrt, n_jobs: 1, random_state: 7}
  top_k: 5
  quality_gate: {min_top5_accuracy: 0.3, max_top5_regression: 0.02}
clients:
  - {client_id: tri_learn, features: [price, weight_g], sample_data: {products: 400, categories: 3, noise: 0.2}}
  - {client_id: tri_shuffled, features: [price, weight_g], sample_data: {products: 400, categories: 3, noise: 0.2}}
  - {client_id: penta_learn, features: [price, weight_g], sample_data: {products: 400, categories: 5, noise: 0.2}}
  - {client_id: penta_shuffled, features: [price, weight_g], sample_data: {products: 400, categories: 5, noise: 0.2}}
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small_gate")
    registry, layout = generated_workspace(root, CLIENTS, seed=3)
    for cid in ("tri_shuffled", "penta_shuffled"):
        shuffle_labels(layout.train_file(cid), "category_id", seed=0)
    return root, registry, layout


@pytest.fixture(scope="module")
def trained(small, tracking_settings):
    from bettercat_assets.core.training.train import train_model

    _, registry, layout = small
    return {
        cid: train_model(registry.get(cid), DAY, layout=layout, settings=tracking_settings)
        for cid in registry.client_ids
    }


@pytest.mark.parametrize("client_id", ["tri_learn", "penta_learn"])
def test_learnable_labels_pass_on_accuracy(trained, client_id):
    result = trained[client_id]
    assert result.metrics["top5_accuracy"] == 1.0, "top-5 cannot fail here"
    gate = result.gate
    assert gate.passed, gate.reason
    assert gate.metric == "accuracy" and gate.baseline_metric == "prior_accuracy"
    assert gate.value > gate.baseline_value and gate.p_value < 0.05
    assert result.champion_version == result.version
    assert gate.reason.startswith(f"accuracy {gate.value:.4f} beats the most-frequent-category")
    n = result.counts["n_classes"]
    assert gate.reason.endswith(
        f"(judged on accuracy: with {n} categories top5_accuracy is 1.0 for any model)"
    )


@pytest.mark.parametrize("client_id", ["tri_shuffled", "penta_shuffled"])
def test_shuffled_labels_fail_on_accuracy(trained, client_id):
    result = trained[client_id]
    assert result.metrics["top5_accuracy"] == 1.0
    gate = result.gate
    assert not gate.passed, gate.reason
    assert gate.metric == "accuracy" and gate.p_value >= 0.05
    assert (
        f"accuracy {gate.value:.4f} does not beat the most-frequent-category baseline"
        in gate.reason
    )
    assert "judged on accuracy" in gate.reason
    assert result.champion_version is None, "no @champion from a model that learned nothing"


def test_mlflow_says_which_metric_judged(trained, mlflow_client):
    for cid, result in trained.items():
        run = mlflow_client.get_run(result.run_id)
        tags, params = run.data.tags, run.data.params
        assert tags["gate_metric"] == "accuracy" and tags["gate_status"] == result.gate.verdict
        note = tags["mlflow.note.content"]
        assert note.startswith(f"Quality gate **{result.gate.verdict}**, judged on `accuracy`")
        assert f"[version {result.version}](" in note
        assert params["train_rows"] == str(result.counts["train_rows"]), "a count is an integer"
        assert params["n_classes"] == str(result.counts["n_classes"])
        assert "prior_accuracy" in run.data.metrics
        mv = mlflow_client.get_model_version(result.model_name, str(result.version))
        assert mv.tags["gate_metric"] == "accuracy"
        assert mv.description.startswith(f"Quality gate **{result.gate.verdict}**")
        assert result.gate.reason in mv.description
        model = mlflow_client.get_registered_model(result.model_name)
        assert f"client `{cid}`" in model.description and "@champion" in model.description
        experiment = mlflow_client.get_experiment(run.info.experiment_id)
        view = experiment.tags["mlflow.sharedViewState.bettercat-gate"]
        assert "metrics.`accuracy`" in view and "metrics.`prior_accuracy`" in view


def test_dagster_metadata_names_the_metric_and_counts_are_integers(trained):
    from dagster import IntMetadataValue

    from bettercat_assets.assets.registered_model import gate_outcome, model_metadata

    result = trained["penta_learn"]
    metadata = model_metadata(result)
    assert metadata["gate_metric"] == "accuracy"
    for key in ("train_rows", "test_rows", "n_classes"):
        assert isinstance(metadata[key], IntMetadataValue), key
    assert metadata["n_classes"].value == 5
    check = gate_outcome("penta_learn", result.version, result.gate)
    assert check.metadata["metric"] == "accuracy"
    assert check.metadata["baseline_metric"] == "prior_accuracy"
    assert 0 < check.metadata["baseline_value"] < 1, "the baseline plot has a value"
    assert "floor" not in check.metadata, "the top-5 floor does not apply to accuracy"


def test_show_prints_the_judging_metric_and_integer_counts(
    small, trained, spark, tracking_settings, monkeypatch
):
    from bettercat_assets.cli import main
    from bettercat_assets.core.scoring.spark_pass import predict_categories

    root, registry, layout = small
    cfg = registry.get("penta_learn")
    predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    monkeypatch.setenv("BETTERCAT_CLIENTS_FILE", str(root / "clients.yaml"))
    monkeypatch.setenv("DATA_PREFIX", str(layout.prefix))
    result = CliRunner().invoke(main, ["show", "--client-id", "penta_learn"])
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    gate = next(line for line in out.splitlines() if line.startswith("quality gate"))
    assert gate.startswith("quality gate passed: accuracy "), gate
    assert gate.count("judged on accuracy") == 1, gate
    header, values = out.splitlines()[3:5]
    row = dict(zip(header.split(), values.split(), strict=True))
    counts = trained["penta_learn"].counts
    assert row["n_classes"] == "5" and row["test_rows"] == str(counts["test_rows"])
    assert row["train_rows"] == str(counts["train_rows"])
    assert "." in row["accuracy"] and "." not in row["train_rows"]
    assert "viewStateShareKey=bettercat-gate" in out
