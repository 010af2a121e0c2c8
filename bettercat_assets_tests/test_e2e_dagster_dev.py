"""End to end through `dagster dev`, as a user drives the UI: "Materialize all" over the
client partitions, then new champions re-scored by the automation sensor.

The real webserver + daemon with the project's own `deploy/dagster.local.yaml`, a workspace
of its own (clients, data, MLflow store, DAGSTER_HOME), and only GraphQL, as the UI sends it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pyarrow.dataset as ds
import pytest
import yaml

from bettercat_assets.partitions import MAX_CLIENTS_PER_RUN
from bettercat_assets_tests.dagster_dev_support import (
    Workspace,
    failed_runs,
    materialize_all,
    start_dagster_dev,
    times_materialized,
    wait_until_idle,
    write_clients,
)
from bettercat_assets_tests.process_support import (
    launch_partition_backfill,
    partition_keys,
    stop_all,
)

pytestmark = pytest.mark.slow

#: delta has 3 categories: fewer than top_k=5 rows per product.
E2E_CLIENTS = ["alpha", "delta", "echo"]
TIMEOUT = 8 * 60


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> Iterator[tuple[str, Workspace, dict[str, int]]]:
    from bettercat_assets_tests.conftest import FIXTURES

    ws = Workspace(tmp_path_factory.mktemp("dagster-dev"))
    doc = yaml.safe_load((FIXTURES / "clients.yaml").read_text())
    doc["clients"] = [c for c in doc["clients"] if c["client_id"] in E2E_CLIENTS]
    assert write_clients(ws, doc) == E2E_CLIENTS
    categories = {c["client_id"]: c["sample_data"]["categories"] for c in doc["clients"]}
    url, proc = start_dagster_dev(ws)
    try:
        yield url, ws, categories
    finally:
        stop_all([proc])


def _check_outputs(ws: Workspace, categories: dict[str, int]) -> None:
    for client_id, n_categories in categories.items():
        root = ws.data_prefix / "products_categories" / f"client_id={client_id}"
        days = sorted(root.glob("date=*"))
        assert len(days) == 1, (client_id, days)
        table = ds.dataset(days[0], format="parquet").to_table().to_pandas()
        assert len(table), client_id
        rows = table.groupby("product_id")["rank"].agg(["count", "min", "max"])
        expected = min(5, n_categories)
        assert (rows["count"] == expected).all(), (client_id, rows["count"].value_counts())
        assert (rows["min"] == 0).all() and (rows["max"] == expected - 1).all(), client_id


def client_runs(found: list[dict]) -> list[dict]:
    """The runs of the client assets: without the fleet view's, which follow each scoring."""
    fleet_only = [{"path": ["client_fleet"]}]
    return [r for r in found if r.get("assetSelection") != fleet_only]


def test_materialize_all_scores_each_client_exactly_once(dev):
    url, ws, categories = dev
    assert partition_keys(url, ["registered_model"]) == E2E_CLIENTS
    backfill_id = materialize_all(url, E2E_CLIENTS)
    everything = wait_until_idle(url, TIMEOUT)
    found = client_runs(everything)
    assert not failed_runs(everything), everything
    assert len(everything) > len(found), "the fleet view followed the scoring"
    ours = [r for r in found if r["tags"].get("dagster/backfill") == backfill_id]
    assert not failed_runs(found), found
    # One range run covers every client: all three assets in one process.
    assert len(ours) == math.ceil(len(E2E_CLIENTS) / MAX_CLIENTS_PER_RUN), ours
    assert len(found) == len(ours), f"nothing else ran (no re-scoring after scoring): {found}"
    for asset in ("training_data", "registered_model", "category_predictions"):
        assert times_materialized(url, asset) == {c: 1 for c in E2E_CLIENTS}, asset
    _check_outputs(ws, categories)


def test_new_champions_are_rescored_once_by_the_automation_sensor(dev):
    url, ws, categories = dev
    before = {r["runId"] for r in wait_until_idle(url, TIMEOUT)}
    scored = times_materialized(url, "category_predictions")
    training = launch_partition_backfill(
        url, (["training_data"], ["registered_model"]), E2E_CLIENTS
    )

    def rescored() -> bool:
        now = times_materialized(url, "category_predictions")
        return all(now[c] > scored[c] for c in E2E_CLIENTS)

    found = client_runs(wait_until_idle(url, TIMEOUT, until=rescored))
    new = [r for r in found if r["runId"] not in before]
    assert not failed_runs(new), new
    rescoring = [r for r in new if r["tags"].get("dagster/backfill") != training]
    assert all(r["tags"].get("dagster/backfill") for r in rescoring), "emitted as a backfill"
    # Three new champions in one tick: one automation backfill, ceil(3 / N) range runs.
    assert len(rescoring) == math.ceil(len(E2E_CLIENTS) / MAX_CLIENTS_PER_RUN), new
    after = times_materialized(url, "category_predictions")
    assert {c: after[c] - scored[c] for c in E2E_CLIENTS} == {c: 1 for c in E2E_CLIENTS}
    _check_outputs(ws, categories)
