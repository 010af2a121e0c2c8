"""From a prediction parquet file back to the model version, MLflow run, training-data
fingerprint and Dagster run (`bettercat lineage`), and `bettercat show`, after one in-process
Dagster run of all three assets in a private workspace.
"""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner
from dagster import instance_for_test

from bettercat_assets_tests.lifecycle_support import (
    Workspace,
    latest_record,
    make_workspace,
    metadata,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("lineage"))


@pytest.fixture(scope="module")
def golf(ws, spark):
    """training_data -> registered_model -> category_predictions for golf, in one Dagster run."""
    from bettercat_assets_tests.dagster_support import ALL_STAGES

    ws.generate("golf")
    with instance_for_test(temp_dir=str(ws.dagster_home)) as instance:
        result = ws.materialize(list(ALL_STAGES), "golf", instance)
        assert result.success
        yield {
            "run_id": result.run_id,
            "data": metadata(instance, "training_data", "golf"),
            "model": metadata(instance, "registered_model", "golf"),
            "model_run_id": latest_record(instance, "registered_model", "golf").run_id,
            "predictions": metadata(instance, "category_predictions", "golf"),
        }


@pytest.fixture(scope="module")
def mlflow_run(ws, golf):
    """The MLflow run of the Dagster training, found by its `dagster_run_id` tag."""
    client = ws.mlflow_client()
    experiment = client.get_experiment_by_name("bettercat/golf")
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.dagster_run_id = '{golf['run_id']}'"
    )
    return run


def cli(ws: Workspace, monkeypatch, *args: str):
    from bettercat_assets.cli import main

    ws.apply(monkeypatch)
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_mlflow_run_records_dagster_run_code_and_data(golf, mlflow_run, ws):
    from bettercat_assets import __version__
    from bettercat_assets.core.tracking.lineage import git_sha
    from bettercat_assets.core.tracking.runs import dagster_run_url

    tags = mlflow_run.data.tags
    assert tags["dagster_run_id"] == golf["run_id"] == golf["model_run_id"]
    assert tags["dagster_run_url"] == dagster_run_url(golf["run_id"])
    assert tags["client_id"] == "golf"
    assert tags["bettercat_version"] == __version__
    sha = git_sha()
    if sha:
        assert tags["code_version"] == f"{__version__}+{sha[:12]}" and tags["git_sha"] == sha
    else:
        assert tags["code_version"] == __version__
    assert tags["data_path"] == str(ws.layout.train_file("golf"))
    assert tags["data_fingerprint"] == golf["data"]["sha256"]


def test_registered_version_tags_point_to_the_run(golf, mlflow_run, ws):
    version = golf["model"]["model_version"]
    mv = ws.mlflow_client().get_model_version("golf_model", str(version))
    assert mv.run_id == mlflow_run.info.run_id
    assert mv.tags["run_id"] == mlflow_run.info.run_id
    assert mv.tags["data_fingerprint"] == golf["data"]["sha256"]
    assert mv.tags["dagster_run_id"] == golf["run_id"]
    assert mv.tags["code_version"] == mlflow_run.data.tags["code_version"]
    assert mv.tags["gate_status"] == "passed"


def test_lineage_from_one_parquet_file(golf, mlflow_run, ws, monkeypatch):
    out_dir = ws.layout.predictions_root("golf")
    parts = sorted(out_dir.glob("date=*/part-*.parquet"))
    assert parts, f"no part files under {out_dir}"
    part = parts[-1]
    version = golf["model"]["model_version"]
    assert set(
        ds.dataset(part).to_table(columns=["model_version"])["model_version"].to_pylist()
    ) == {version}

    result = cli(ws, monkeypatch, "lineage", str(part))
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    run_id = mlflow_run.info.run_id
    assert lines["client_id"] == "golf"
    assert lines["model_version"] == str(version)
    assert lines["run_id"] == run_id
    assert lines["run_url"].startswith("http") and run_id in lines["run_url"]
    run_page = f"/experiments/{mlflow_run.info.experiment_id}/runs/{run_id}"
    assert lines["run_url"].split("?")[0].endswith(run_page)
    assert lines["data_fingerprint"] == golf["data"]["sha256"]
    assert lines["data_path"] == str(ws.layout.train_file("golf"))
    assert lines["dagster_run_id"] == golf["model_run_id"], "the run that trained the model"
    assert lines["scoring_dagster_run_id"] == golf["run_id"], "the run that wrote the file"
    from bettercat_assets.core.tracking.runs import dagster_run_url

    assert lines["dagster_run_url"] == dagster_run_url(golf["model_run_id"])
    assert lines["dagster_run_url"].startswith("http://") and "/runs/" in lines["dagster_run_url"]
    assert lines["scoring_dagster_run_url"] == dagster_run_url(golf["run_id"])
    assert lines["code_version"] == mlflow_run.data.tags["code_version"]
    assert lines["gate_status"] == "passed"


def test_lineage_of_a_non_prediction_file_is_a_user_error(ws, monkeypatch, tmp_path):
    from bettercat_assets.cli import main

    bogus = tmp_path / "part-0.parquet"
    bogus.write_bytes(b"not parquet")
    ws.apply(monkeypatch)
    result = CliRunner().invoke(main, ["lineage", str(bogus)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("error:") and "Traceback" not in result.output


def test_show_prints_champion_metrics_and_predictions(golf, mlflow_run, ws, monkeypatch):
    version = golf["model"]["model_version"]
    result = cli(ws, monkeypatch, "show", "--client-id", "golf", "--products", "3")
    out = result.stdout
    assert f"client golf: golf_model v{version} (@champion)" in out
    assert mlflow_run.info.run_id in out
    assert "quality gate passed" in out
    for metric in ["top5_accuracy", "accuracy", "macro_f1", "log_loss"]:
        assert metric in out, metric
    assert f"{mlflow_run.data.metrics['top5_accuracy']:.4f}" in out
    products = golf["predictions"]["products_scored"]
    assert f"{products} products, {5 * products} rows, model version(s) [{version}]" in out
    # three sample products, each with its five ranked categories and scores
    frame = ds.dataset(golf["predictions"]["path"], format="parquet").to_table().to_pandas()
    first = sorted(frame["product_id"].unique())[:3]
    for product_id in first:
        assert product_id in out
    assert "#1" in out and "#5" in out and "#6" not in out


def test_dagster_metadata_shows_weakest_categories_and_preview(golf):
    weakest = golf["model"]["weakest_categories"]
    assert "categories with test rows have f1 = 0" in weakest.splitlines()[0]
    table = [line for line in weakest.splitlines() if line.startswith("|")]
    for column in ["category", "precision", "recall", "f1", "support", "top5_recall"]:
        assert column in table[0], table[0]
    assert len(table) >= 3  # header, separator, at least one category
    assert golf["model"]["prior_top5_accuracy"] < golf["model"]["top5_accuracy"]
    preview = golf["predictions"]["preview"]
    assert "| product_id" in preview and "pred_label" in preview and "pred_score" in preview


def test_show_mentions_problems_in_other_clients_entries(golf, ws, monkeypatch, tmp_path):
    broken = tmp_path / "clients.yaml"
    broken.write_text(
        ws.clients_file.read_text(encoding="utf-8")
        + "  - {client_id: hotel, features: [price], model_params: {n_estimator: 3}}\n",
        encoding="utf-8",
    )
    result = cli(ws, monkeypatch, "show", "--clients-file", str(broken), "--client-id", "golf")
    assert "client golf: golf_model" in result.stdout
    assert result.stdout.rstrip().endswith(
        "note: 1 problem(s) in other clients' entries of the clients file; "
        "`bettercat check-config` lists them"
    )
