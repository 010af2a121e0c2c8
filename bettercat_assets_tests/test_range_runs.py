"""A range run through the Dagster API: many clients in one run, everything kept per client.

A private workspace of four clients (own data, MLflow store and Dagster instance), one of which
has a broken training file. One run of all three assets over the range must give every good
client its own materializations, metadata, checks and exactly one FINISHED MLflow run; the
broken client fails alone, named with its file, and needs no manual step for the others.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest
import yaml

from bettercat_assets.assets import CATEGORY_PREDICTIONS, REGISTERED_MODEL, TRAINING_DATA
from bettercat_assets.partitions import range_tags

pytestmark = pytest.mark.integration

CLIENTS = ["alpha", "bravo", "charlie", "delta"]
BROKEN = "charlie"
DAY = "2026-11-30"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_all
    from bettercat_assets_tests.conftest import FIXTURES

    root = tmp_path_factory.mktemp("range-run")
    doc = yaml.safe_load((FIXTURES / "clients.yaml").read_text())
    doc["clients"] = [c for c in doc["clients"] if c["client_id"] in CLIENTS]
    (root / "clients.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    registry = load_clients(root / "clients.yaml")
    generate_all(registry.clients.values(), DataLayout(root / "data"), seed=5)
    with gzip.open(root / "data/train/client_id=charlie/data_train.csv.gz", "wt") as fh:
        fh.write("product_id,price\np1,3.5\n")
    return root


@pytest.fixture(scope="module")
def run(ws, spark):
    from bettercat_assets.assets.client_assets import build_client_assets
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.partitions import client_partitions
    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource

    assets = build_client_assets(client_partitions(load_clients(ws / "clients.yaml")))
    resources = {
        "clients": ClientsResource(
            clients_file=str(ws / "clients.yaml"), data_prefix=str(ws / "data")
        ),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{ws / 'mlflow.db'}",
            artifact_root=(ws / "mlartifacts").as_uri(),
        ),
        "spark": SparkResource(master="local[2]"),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [assets],
        instance=instance,
        resources=resources,
        tags=range_tags(CLIENTS),
        run_config={"ops": {"client_assets": {"config": {"day": DAY}}}},
        raise_on_error=False,
    )
    return result, instance, ws


def _events(result, kind: str) -> list:
    return [e.event_specific_data for e in result.all_events if e.event_type_value == kind]


def test_the_broken_client_fails_alone_naming_client_and_file(run):
    result, instance, ws = run
    assert not result.success
    (failure,) = _events(result, "STEP_FAILURE")
    text = failure.error.message
    assert "1 of 4 client(s) failed" in text
    assert f"client '{BROKEN}'" in text
    assert str(ws / "data/train/client_id=charlie/data_train.csv.gz") in text
    for asset in (REGISTERED_MODEL, CATEGORY_PREDICTIONS):
        assert BROKEN not in instance.get_materialized_partitions(asset)


def test_every_other_client_is_materialized_once_with_its_own_metadata(run):
    result, instance, ws = run
    good = [c for c in CLIENTS if c != BROKEN]
    mats = [m.materialization for m in _events(result, "ASSET_MATERIALIZATION")]
    for asset in (TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS):
        partitions = sorted(m.partition for m in mats if m.asset_key == asset)
        expected = sorted(CLIENTS if asset == TRAINING_DATA else good)
        assert partitions == expected, asset
    models = {m.partition: m.metadata for m in mats if m.asset_key == REGISTERED_MODEL}
    assert {cid: md["model_name"].value for cid, md in models.items()} == {
        cid: f"{cid}_model" for cid in good
    }
    preds = {m.partition: m.metadata for m in mats if m.asset_key == CATEGORY_PREDICTIONS}
    for cid in good:
        path = Path(preds[cid]["path"].value)
        assert path == ws / "data/products_categories" / f"client_id={cid}" / f"date={DAY}"
        table = ds.dataset(path, format="parquet").to_table()
        assert table.num_rows == preds[cid]["rows_written"].value > 0
        assert set(table.column("model_version").to_pylist()) == {
            models[cid]["model_version"].value
        }


def test_checks_land_on_each_clients_own_partition(run):
    result, _, _ = run
    checks = _events(result, "ASSET_CHECK_EVALUATION")
    by_client: dict[str, set[str]] = {}
    for c in checks:
        by_client.setdefault(c.partition, set()).add(
            f"{c.asset_key.to_user_string()}.{c.check_name}"
        )
    for cid in CLIENTS:
        assert "training_data.schema" in by_client[cid]
    for cid in (c for c in CLIENTS if c != BROKEN):
        assert "registered_model.quality_gate" in by_client[cid]
        assert "category_predictions.rank_order" in by_client[cid]
    broken_schema = [c for c in checks if c.partition == BROKEN and c.check_name == "schema"]
    assert len(broken_schema) == 1 and not broken_schema[0].passed
    assert not any(c.partition == BROKEN and c.check_name == "quality_gate" for c in checks)


def test_each_good_client_has_exactly_one_finished_mlflow_run(run):
    from mlflow.tracking import MlflowClient

    result, _, ws = run
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    for cid in (c for c in CLIENTS if c != BROKEN):
        experiment = client.get_experiment_by_name(f"bettercat/{cid}")
        found = client.search_runs([experiment.experiment_id])
        assert [r.info.status for r in found] == ["FINISHED"], cid
        assert found[0].data.tags["dagster_run_id"] == result.run_id
    assert client.get_experiment_by_name(f"bettercat/{BROKEN}") is None
