"""Links between the UIs: MLflow runs link back to their Dagster run, Dagster metadata links to
MLflow in its "Model training" view, and client experiments are marked as model training."""

from __future__ import annotations

import pytest

from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.tracking import runs as tracking
from bettercat_assets.resources import MlflowResource

SQLITE = TrackingSettings(tracking_uri="sqlite:///tmp/x/mlflow.db")
SERVER = TrackingSettings(tracking_uri="http://mlflow:5000")
RUN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(autouse=True)
def no_ui_env(monkeypatch):
    monkeypatch.delenv(tracking.DAGSTER_UI_URL_ENV, raising=False)
    monkeypatch.delenv(tracking.MLFLOW_UI_URL_ENV, raising=False)


def test_dagster_run_url_defaults_to_dagster_dev_and_follows_the_env(monkeypatch):
    assert tracking.dagster_run_url("abc-123") == "http://127.0.0.1:3000/runs/abc-123"
    monkeypatch.setenv(tracking.DAGSTER_UI_URL_ENV, "https://dagster.example.com/")
    assert tracking.dagster_run_url("abc-123") == "https://dagster.example.com/runs/abc-123"


def test_mlflow_run_tags_link_back_to_the_dagster_run(monkeypatch):
    monkeypatch.setenv(tracking.DAGSTER_UI_URL_ENV, "http://dagster.internal:3000")
    tags = MlflowResource.run_tags("acme_fashion", "run-42")
    assert tags == {
        "client_id": "acme_fashion",
        "dagster_run_id": "run-42",
        "dagster_run_url": "http://dagster.internal:3000/runs/run-42",
    }


def test_mlflow_links_open_the_model_training_view(monkeypatch):
    query = "?workflowType=machine_learning"
    assert tracking.run_url(SQLITE, "7", RUN) == (
        f"http://127.0.0.1:5000/#/experiments/7/runs/{RUN}{query}"
    )
    assert tracking.model_version_url(SERVER, "acme fashion_model", 3) == (
        f"http://mlflow:5000/#/models/acme%20fashion_model/versions/3{query}"
    )
    assert tracking.experiments_url("http://h:5001/") == f"http://h:5001/#/experiments{query}"
    monkeypatch.setenv(tracking.MLFLOW_UI_URL_ENV, "https://mlflow.example.com")
    assert tracking.run_url(SERVER, "1", RUN).startswith("https://mlflow.example.com/#/")


def test_prediction_links_name_the_model_version_and_its_run():
    links = tracking.prediction_links(SERVER, "acme_fashion_model", 4, RUN, experiment_id="2")
    assert links == {
        "model_version_url": tracking.model_version_url(SERVER, "acme_fashion_model", 4),
        "mlflow_run": tracking.run_url(SERVER, "2", RUN),
    }
    assert tracking.prediction_links(SERVER, "m", 1, None) == {
        "model_version_url": tracking.model_version_url(SERVER, "m", 1)
    }


def test_prediction_links_find_the_runs_experiment(mlflow_client, tracking_settings):
    experiment_id = mlflow_client.create_experiment("links_probe")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    links = tracking.prediction_links(tracking_settings, "links_probe_model", 2, run_id)
    assert links["mlflow_run"] == tracking.run_url(tracking_settings, experiment_id, run_id)
    unknown = tracking.prediction_links(tracking_settings, "links_probe_model", 2, RUN)
    assert set(unknown) == {"model_version_url"}, "no link rather than a wrong one"


def test_client_experiments_are_marked_model_training(registry, mlflow_client, tracking_settings):
    kind = (tracking.EXPERIMENT_KIND_TAG, tracking.MODEL_TRAINING_KIND)
    assert kind == ("mlflow.experimentKind", "custom_model_development")
    new = registry.get("alpha").model_copy(update={"client_id": "kind_probe_new"})
    experiment_id = tracking.ensure_experiment(mlflow_client, tracking_settings, new)
    tags = mlflow_client.get_experiment(experiment_id).tags
    assert tags[kind[0]] == kind[1] and tags["client_id"] == "kind_probe_new"

    # An experiment created before the tag existed (or switched to GenAI) is fixed on next use.
    old = registry.get("alpha").model_copy(update={"client_id": "kind_probe_old"})
    old_id = mlflow_client.create_experiment(
        old.experiment_name, tags={kind[0]: "genai_development"}
    )
    assert tracking.ensure_experiment(mlflow_client, tracking_settings, old) == old_id
    assert mlflow_client.get_experiment(old_id).tags[kind[0]] == kind[1]


def test_runs_list_link_opens_the_gate_view():
    """The runs list bettercat links to shows the gate metric, its baseline and the verdict
    (MLflow's shared view: `viewStateShareKey` names the experiment tag holding the state)."""
    import json

    from bettercat_assets.core.tracking import views

    url = views.runs_url(SERVER, "7")
    assert url.startswith("http://mlflow:5000/#/experiments/7/runs?")
    assert "viewStateShareKey=bettercat-gate" in url and "workflowType=machine_learning" in url
    state = views.gate_view_state("accuracy", "prior_accuracy")
    assert state["selectedColumns"][:3] == [
        "metrics.`accuracy`",
        "metrics.`prior_accuracy`",
        "tags.`gate_status`",
    ]
    assert json.loads(json.dumps(state)) == state


def test_run_description_links_the_version_and_the_dagster_run():
    from bettercat_assets.core.config.clients import QualityGate
    from bettercat_assets.core.training.descriptions import run_description, version_description
    from bettercat_assets.core.training.gate import gate_metric, quality_gate

    gate = quality_gate(0.9, QualityGate(), baseline_value=0.4, metric=gate_metric(3), test_rows=50)
    text = run_description(
        gate, "http://m/#/models/a_model/versions/2", 2, "http://d/runs/abcdef12-9"
    )
    assert text.startswith("Quality gate **passed**, judged on `accuracy`: **accuracy 0.9000**")
    assert "[version 2](http://m/#/models/a_model/versions/2)" in text
    assert "[abcdef12](http://d/runs/abcdef12-9)" in text
    described = version_description(gate, champion_after=2, version=2)
    assert described.splitlines()[0].startswith("Quality gate **passed**")
    assert gate.reason in described and described.endswith("v2 is `@champion`.")
