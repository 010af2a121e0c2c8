"""Refit on all rows: the registered model is fit on train + test split, while metrics, gate and
monitoring profile stay the split model's; the products each version was fit on are kept, so
a refit champion is never compared on test rows it has seen. Trained for real on tiny
generated clients, in the session's MLflow store (client ids of their own)."""

from __future__ import annotations

import gzip
import io
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bettercat_assets_tests.workspace_support import generated_workspace

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 3)
CLIENT = (
    "features: [price, weight_g, color_code, n_pages], sample_data: {products: 500, categories: 12}"
)
CLIENTS = f"""\
defaults:
  model_params: {{n_estimators: 15, min_samples_leaf: 3, max_features: sqrt, n_jobs: 1, random_state: 7}}
  quality_gate: {{min_top5_accuracy: 0.3, max_top5_regression: 0.02}}
clients:
  - {{client_id: refit_on, {CLIENT}}}
  - {{client_id: refit_same, {CLIENT}}}
  - {{client_id: refit_grown, {CLIENT}}}
  - {{client_id: refit_off, refit_on_all_rows: false, {CLIENT}}}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return generated_workspace(tmp_path_factory.mktemp("refit"), CLIENTS, seed=5)


def _train(workspace, client_id: str, settings):
    from bettercat_assets.core.training.train import train_model

    registry, layout = workspace
    return train_model(registry.get(client_id), DAY, layout=layout, settings=settings)


def _test_split(workspace, client_id: str):
    """The training's split, recomputed (it is deterministic): the table and the test rows."""
    from bettercat_assets.core.data.loading import load_training_table
    from bettercat_assets.core.training.split import split_train_test

    registry, layout = workspace
    cfg = registry.get(client_id)
    table = load_training_table(cfg, layout.train_file(client_id))
    _, x_test, _, y_test = split_train_test(table, cfg.test_size, cfg.model_params["random_state"])
    return table, x_test, y_test


def _top5(settings, model_name: str, version: int, x: pd.DataFrame, y: np.ndarray) -> float:
    from bettercat_assets.core.model.store import load_scoring_model
    from bettercat_assets.core.training.evaluation import score_metric

    model = load_scoring_model(settings, model_name, version)
    proba = model.predict_proba({n: x[n].to_numpy() for n in model.feature_names})
    return score_metric("top5_accuracy", y, proba, model.classes_)


def _fitted_ids(mlflow_client, run_id: str) -> np.ndarray:
    from bettercat_assets.core.training.fitted_ids import load_fitted_ids

    hashes = load_fitted_ids(mlflow_client, run_id)
    assert hashes is not None
    return hashes


def _trees_rows(settings, model_name: str, version: int) -> int:
    """How many rows the registered sklearn forest was fit on (a bootstrap draws that many)."""
    from bettercat_assets.core.model.store import load_sklearn

    forest = load_sklearn(settings, model_name, version)
    return round(forest.estimators_[0].tree_.weighted_n_node_samples[0])


@pytest.fixture(scope="module")
def refit(workspace, tracking_settings):
    return _train(workspace, "refit_on", tracking_settings)


def test_refit_model_is_registered_and_fit_on_every_row(
    refit, workspace, tracking_settings, mlflow_client
):
    from bettercat_assets.core.training.fitted_ids import id_hashes

    table, x_test, y_test = _test_split(workspace, "refit_on")
    run = mlflow_client.get_run(refit.run_id)
    params = run.data.params
    assert int(params["fit_rows"]) == table.rows
    assert int(params["train_rows"]) + int(params["test_rows"]) == table.rows
    assert "refit_seconds" in run.data.metrics and run.data.tags["fitted_on"] == "all_rows"
    assert run.data.metrics["refit_compact_model_mb"] > 0
    version = mlflow_client.get_model_version(refit.model_name, str(refit.version))
    assert version.tags["fitted_on"] == "all_rows"
    assert _trees_rows(tracking_settings, refit.model_name, refit.version) == table.rows
    hashes = _fitted_ids(mlflow_client, refit.run_id)
    assert hashes.dtype == np.uint64 and np.all(hashes[:-1] < hashes[1:])
    assert np.array_equal(hashes, id_hashes(table.product_ids))
    # the registered model saw the test split: it scores better there than the split model
    registered = _top5(tracking_settings, refit.model_name, refit.version, x_test, y_test)
    assert registered > refit.metrics["top5_accuracy"] + 0.02, (registered, refit.metrics)
    # the ids are a run artifact beside the model, not inside it (downloads do not grow)
    assert "training/fitted_ids.npy" in {
        a.path for a in mlflow_client.list_artifacts(refit.run_id, "training")
    }


def test_reference_profile_comes_from_the_split_model(refit, workspace, tracking_settings):
    from bettercat_assets.core.model.store import download_compact
    from bettercat_assets.core.monitoring.reference import PROFILE_FILE, ReferenceProfile

    _, x_test, y_test = _test_split(workspace, "refit_on")
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_compact(tracking_settings, refit.model_name, refit.version, tmp)
        profile = ReferenceProfile.load(Path(folder) / PROFILE_FILE)
    registered = _top5(tracking_settings, refit.model_name, refit.version, x_test, y_test)
    assert profile.predictions.rows == len(y_test)
    assert profile.predictions.top5_accuracy == pytest.approx(
        refit.metrics["top5_accuracy"], abs=1e-4
    )
    assert abs(profile.predictions.top5_accuracy - registered) > 0.02


@pytest.fixture(scope="module")
def same_file_twice(workspace, tracking_settings):
    """refit_same trained three times on one file: with the exclusion, then without it."""
    from bettercat_assets.core.training import champion

    first = _train(workspace, "refit_same", tracking_settings)
    second = _train(workspace, "refit_same", tracking_settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(champion, "load_fitted_ids", lambda *_args: None)
        unfair = _train(workspace, "refit_same", tracking_settings)
    return first, second, unfair


def test_retraining_on_the_same_file_passes_against_a_refit_champion(same_file_twice):
    first, second, _ = same_file_twice
    assert first.gate.passed and second.gate.passed, second.gate.reason
    assert second.champion_version == second.version
    # every test row was seen by the champion: its own logged metric stands in
    assert second.gate.champion_value == pytest.approx(first.metrics["top5_accuracy"], abs=1e-4)
    assert "logged by its own training on its held-out split" in second.gate.reason
    assert f"fit on {second.counts['test_rows']} of the {second.counts['test_rows']}" in (
        second.gate.reason
    )


def test_without_the_exclusion_the_refit_champion_would_fail_the_gate(same_file_twice):
    _, second, unfair = same_file_twice
    assert not unfair.gate.passed
    assert f"worse than champion v{second.version}'s" in unfair.gate.reason
    assert "on the same test split" in unfair.gate.reason
    assert unfair.gate.champion_value > unfair.gate.value + 0.02


def _grow(path: Path, seed: int) -> set[str]:
    """Append a copy of every row under a new product id (and a jittered price); the new ids."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="gzip")
    extra = frame.copy()
    extra["product_id"] = "new-" + extra["product_id"]
    price = pd.to_numeric(extra["price"], errors="coerce")
    jitter = np.random.default_rng(seed).normal(1.0, 0.05, len(extra))
    extra["price"] = (price * jitter).round(2).astype(str).replace("nan", "")
    buffer = io.StringIO()
    pd.concat([frame, extra]).to_csv(buffer, index=False, lineterminator="\n")
    path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8")))
    return set(extra["product_id"])


def test_a_grown_file_compares_the_champion_on_the_rows_it_was_not_fit_on(
    workspace, tracking_settings, mlflow_client
):
    _, layout = workspace
    first = _train(workspace, "refit_grown", tracking_settings)
    new_ids = _grow(layout.train_file("refit_grown"), seed=1)
    second = _train(workspace, "refit_grown", tracking_settings)
    table, x_test, y_test = _test_split(workspace, "refit_grown")
    unseen = table.product_ids.loc[x_test.index].isin(new_ids).to_numpy()
    assert 0 < unseen.sum() < len(y_test)
    expected = _top5(
        tracking_settings, first.model_name, first.version, x_test[unseen], y_test[unseen]
    )
    assert second.gate.champion_value == pytest.approx(expected)
    assert f"on the {unseen.sum()} test rows it was not fit on" in second.gate.reason
    assert second.gate.challenger_value is not None
    run = mlflow_client.get_run(second.run_id)
    assert run.data.metrics["champion_top5_accuracy"] == pytest.approx(expected, abs=1e-4)


def test_refit_off_registers_the_split_model(workspace, tracking_settings, mlflow_client):
    result = _train(workspace, "refit_off", tracking_settings)
    run = mlflow_client.get_run(result.run_id)
    train_rows = int(run.data.params["train_rows"])
    assert int(run.data.params["fit_rows"]) == train_rows == result.counts["fit_rows"]
    assert "refit_seconds" not in run.data.metrics and "refit_compact_model_mb" not in (
        run.data.metrics
    )
    version = mlflow_client.get_model_version(result.model_name, str(result.version))
    assert version.tags["fitted_on"] == "train_split"
    assert _trees_rows(tracking_settings, result.model_name, result.version) == train_rows
    assert _fitted_ids(mlflow_client, result.run_id).size == train_rows
    # the registered model is the evaluated one: its test-split score is the logged one
    _, x_test, y_test = _test_split(workspace, "refit_off")
    registered = _top5(tracking_settings, result.model_name, result.version, x_test, y_test)
    assert registered == pytest.approx(result.metrics["top5_accuracy"], abs=1e-4)


def test_fitted_id_hashes_are_sorted_and_looked_up_exactly():
    from bettercat_assets.core.training.fitted_ids import contains, id_hashes

    ids = [f"P-{i:06d}" for i in range(2000)] + ["é-ü", ""]
    hashes = id_hashes(reversed(ids))
    assert hashes.dtype == np.uint64 and hashes.size == len(ids)
    assert np.all(hashes[:-1] < hashes[1:])
    probe = ["P-000007", "P-999999", "é-ü", "x", ""]
    assert contains(hashes, probe).tolist() == [True, False, True, False, True]
    assert contains(id_hashes([]), probe).tolist() == [False] * 5


def test_too_few_unseen_rows_is_at_least_30_or_a_tenth_of_the_split():
    from bettercat_assets.core.training.champion import min_unseen_rows

    assert [min_unseen_rows(n) for n in (50, 300, 301, 5000)] == [30, 30, 31, 500]
