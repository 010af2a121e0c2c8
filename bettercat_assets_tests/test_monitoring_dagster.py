"""Monitoring through the Dagster API: a shifted feature warns for its client only.

A private workspace of two clients trained and scored in one range run; then one client's
prediction file gets a unit change on one feature (grams sent as milligrams) and both are
scored again. The drifted client gets a WARN `input_drift` naming that feature and only it;
the other client's checks pass; the numbers land on each client's partition.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from bettercat_assets.partitions import range_tags

pytestmark = pytest.mark.integration

CLIENTS = ["mon_a", "mon_b"]
FEATURES = ["price", "weight_g", "n_reviews", "rating"]
MONITORING = ("input_drift", "prediction_drift", "estimated_accuracy")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_all
    from bettercat_assets_tests.conftest import FIXTURES

    root = tmp_path_factory.mktemp("monitoring")
    doc = yaml.safe_load((FIXTURES / "clients.yaml").read_text())
    doc["clients"] = [
        {
            "client_id": cid,
            "features": FEATURES,
            "sample_data": {"products": 3000, "categories": 10},
        }
        for cid in CLIENTS
    ]
    (root / "clients.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    generate_all(
        load_clients(root / "clients.yaml").clients.values(), DataLayout(root / "data"), 11
    )
    return root


def _resources(ws: Path) -> dict[str, object]:
    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource

    return {
        "clients": ClientsResource(
            clients_file=str(ws / "clients.yaml"), data_prefix=str(ws / "data")
        ),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{ws / 'mlflow.db'}",
            artifact_root=(ws / "mlartifacts").as_uri(),
        ),
        "spark": SparkResource(master="local[2]"),
    }


def _run(ws: Path, instance, selection: list[str], day: str):
    from bettercat_assets.assets.client_assets import build_client_assets
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.partitions import client_partitions

    assets = build_client_assets(client_partitions(load_clients(ws / "clients.yaml")))
    resources = _resources(ws)
    return dg.materialize(
        [assets],
        selection=[dg.AssetKey(s) for s in selection],
        instance=instance,
        resources=resources,
        tags=range_tags(CLIENTS),
        run_config={"ops": {"client_assets": {"config": {"day": day}}}},
    )


def _monitoring_checks(result, cid: str) -> dict[str, dg.AssetCheckEvaluation]:
    found = result.get_asset_check_evaluations()
    return {e.check_name: e for e in found if e.partition == cid and e.check_name in MONITORING}


@pytest.fixture(scope="module")
def runs(ws, spark):
    instance = dg.DagsterInstance.ephemeral()
    clean = _run(
        ws, instance, ["training_data", "registered_model", "category_predictions"], "2026-12-01"
    )
    path = ws / "data/prediction/client_id=mon_a/data_predict.csv.gz"
    frame = pd.read_csv(path)
    frame["weight_g"] = frame["weight_g"] * 1000  # a unit change: grams sent as milligrams
    with gzip.open(path, "wt") as fh:
        frame.to_csv(fh, index=False)
    shifted = _run(ws, instance, ["category_predictions"], "2026-12-02")
    return clean, shifted, instance


def test_clean_scoring_passes_every_monitoring_check(runs):
    clean, _, _ = runs
    for cid in CLIENTS:
        checks = _monitoring_checks(clean, cid)
        assert set(checks) == set(MONITORING), cid
        assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}


def test_shifted_feature_warns_naming_it_for_that_client_only(runs):
    _, shifted, _ = runs
    drifted = _monitoring_checks(shifted, "mon_a")["input_drift"]
    assert not drifted.passed
    assert drifted.severity == dg.AssetCheckSeverity.WARN
    assert "weight_g" in drifted.description
    assert not {"price", "n_reviews", "rating"} & set(drifted.metadata["drifted_features"].value)
    other = _monitoring_checks(shifted, "mon_b")
    assert all(c.passed for c in other.values()), {n: c.description for n, c in other.items()}


def test_numbers_land_on_each_clients_partition(runs):
    _, _, instance = runs
    for cid, drifted in (("mon_a", 1), ("mon_b", 0)):
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("category_predictions"), asset_partitions=[cid]
            ),
            limit=1,
        ).records[0]
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert meta["monitor_drifted_features"] == drifted
        assert meta["monitor_products"] == 600
        assert (meta["psi_weight_g"] > 1.0) == bool(drifted)
        assert 0.0 < meta["monitor_estimated_top5"] <= 1.0


def test_fleet_asset_and_cli_rank_the_drifted_client_first(ws, runs, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from bettercat_assets.assets.fleet import build_fleet_asset
    from bettercat_assets.cli import main
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.partitions import client_partitions
    from bettercat_assets.resources import ClientsResource, MlflowResource

    _, _, instance = runs
    tracking_uri = f"sqlite:///{ws / 'mlflow.db'}"
    fleet = build_fleet_asset(client_partitions(load_clients(ws / "clients.yaml")))
    result = dg.materialize(
        [fleet],
        instance=instance,
        resources={
            "clients": ClientsResource(
                clients_file=str(ws / "clients.yaml"), data_prefix=str(ws / "data")
            ),
            "mlflow": MlflowResource(
                tracking_uri=tracking_uri, artifact_root=(ws / "mlartifacts").as_uri()
            ),
        },
    )
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    ranking = meta["ranking"].value.records
    assert [r.data["client_id"] for r in ranking] == ["mon_a", "mon_b"]
    assert "input drift" in ranking[0].data["reasons"]  # with prediction drift: a unit change
    # sends every product down the trees' extreme-weight branches
    assert "weight_g" in ranking[0].data["drifted_features"]
    assert ranking[1].data["reasons"] == ""
    assert meta["needing_attention"].value == 1
    parquet = pd.read_parquet(meta["path"].value)
    assert parquet["client_id"].tolist() == ["mon_a", "mon_b"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("BETTERCAT_ARTIFACT_ROOT", (ws / "mlartifacts").as_uri())
    out = tmp_path / "fleet.parquet"
    printed = CliRunner().invoke(
        main,
        [
            "fleet",
            "--clients-file",
            str(ws / "clients.yaml"),
            "--data-prefix",
            str(ws / "data"),
            "--all",
            "--output",
            str(out),
        ],
    )
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == "1 of 2 client(s) need attention"
    assert lines[2].split()[0] == "mon_a" and "input drift" in lines[2]
    assert pd.read_parquet(out)["client_id"].tolist() == ["mon_a", "mon_b"]


def _retrain_requests(ws: Path, instance, cursor):
    from bettercat_assets.assets.client_assets import build_client_assets
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.partitions import client_partitions

    assets = build_client_assets(client_partitions(load_clients(ws / "clients.yaml")))
    result = dg.evaluate_automation_conditions(
        defs=dg.Definitions(assets=[assets], resources=_resources(ws)),
        instance=instance,
        asset_selection=dg.AssetSelection.assets("registered_model"),
        cursor=cursor,
    )
    return sorted(result.get_requested_partitions(dg.AssetKey("registered_model"))), result.cursor


def test_retrain_on_drift_asks_once_per_new_training_file(ws, runs, monkeypatch, tmp_path):
    _, _, instance = runs
    doc = yaml.safe_load((ws / "clients.yaml").read_text())
    for entry in doc["clients"]:
        entry["monitoring"] = {"retrain_on_drift": True}
    opted_in = tmp_path / "clients.yaml"
    opted_in.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("BETTERCAT_CLIENTS_FILE", str(opted_in))
    monkeypatch.setenv("DATA_PREFIX", str(ws / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws / 'mlflow.db'}")

    requested, cursor = _retrain_requests(ws, instance, None)
    assert requested == []  # mon_a drifted, but its model was trained on this very file
    for cid in CLIENTS:  # new labelled products arrive for both clients
        path = ws / f"data/train/client_id={cid}/data_train.csv.gz"
        frame = pd.read_csv(path)
        with gzip.open(path, "wt") as fh:
            frame.iloc[:-10].to_csv(fh, index=False)
    requested, cursor = _retrain_requests(ws, instance, cursor)
    assert requested == ["mon_a"]  # mon_b has new data too, but its scoring did not drift
    requested, _ = _retrain_requests(ws, instance, cursor)
    assert requested == []  # once per new training file


def test_cli_predict_warns_about_the_drifted_feature(ws, runs):
    import os
    import subprocess
    import sys

    bettercat = Path(sys.executable).with_name("bettercat")
    env = {
        **os.environ,
        "BETTERCAT_CLIENTS_FILE": str(ws / "clients.yaml"),
        "DATA_PREFIX": str(ws / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlflow.db'}",
        "BETTERCAT_ARTIFACT_ROOT": (ws / "mlartifacts").as_uri(),
    }
    outputs = {}
    for cid in CLIENTS:
        done = subprocess.run(
            [str(bettercat), "predict", "--client-id", cid, "--inference-date", "2026-12-03"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[cid] = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert any(
        line.startswith("warning: input_drift: client 'mon_a'") and "weight_g" in line
        for line in outputs["mon_a"]
    ), outputs
    assert outputs["mon_b"] == []
