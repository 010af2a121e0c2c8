"""One client's bad `clients.yaml` entry stays that client's problem: the code location loads,
the other clients materialize and are scheduled, the bad one fails with its key named.

Partition keys are built from the fixture clients.yaml at import, so the file here reuses two of
its ids: `alpha` (valid) and `bravo` (an unknown model_params key), in a private workspace.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone

import pytest
from dagster import build_schedule_context, instance_for_test, materialize

from bettercat_assets_tests.lifecycle_support import Workspace, make_workspace
from bettercat_assets_tests.reliability_support import BIN, REPO, subprocess_env

pytestmark = pytest.mark.integration

CLIENTS_YAML = """\
defaults:
  model_params: {n_estimators: 10, min_samples_leaf: 3, max_features: sqrt, n_jobs: 1, random_state: 7}
  quality_gate: {min_top5_accuracy: 0.0, max_top5_regression: 1.0}
clients:
  - {client_id: alpha, features: [price, weight_g], sample_data: {products: 300, categories: 6}}
  - {client_id: bravo, features: [price], model_params: {n_estimator: 3}}
  - {client_id: ../etc, features: [price]}
"""
KEY_ERROR = (
    "client 'bravo': model_params: unknown RandomForestClassifier parameter 'n_estimator' "
    "(did you mean 'n_estimators'?)"
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    ws = make_workspace(tmp_path_factory.mktemp("isolation"))
    ws.clients_file.write_text(CLIENTS_YAML, encoding="utf-8")
    ws.generate("alpha")
    return ws


def test_definitions_validate_passes_and_logs_the_bad_entries(workspace):
    proc = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", "bettercat_assets.definitions"],
        env=subprocess_env(BETTERCAT_CLIENTS_FILE=str(workspace.clients_file)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # Dagster's log colours
    assert proc.returncode == 0, output
    warnings = [line for line in output.splitlines() if " - WARNING - " in line]
    assert any(line.endswith(f"{workspace.clients_file}: {KEY_ERROR}") for line in warnings), output
    assert any("client '../etc'" in line and "left out" in line for line in warnings), output


def _partitions(workspace: Workspace):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.partitions import client_partitions

    return client_partitions(load_clients(workspace.clients_file))


def test_good_client_materializes_and_bad_client_fails_with_the_key(workspace, spark):
    from bettercat_assets.assets.client_assets import build_client_assets

    assets = [build_client_assets(_partitions(workspace))]
    with instance_for_test() as instance:
        good = materialize(
            assets, partition_key="alpha", instance=instance, resources=workspace.resources()
        )
        assert good.success
        assert len(good.get_asset_materialization_events()) == 3
        bad = materialize(
            assets,
            partition_key="bravo",
            instance=instance,
            resources=workspace.resources(),
            raise_on_error=False,
        )
    assert not bad.success
    failures = [e for e in bad.all_events if e.is_step_failure]
    assert [f.step_key for f in failures] == ["client_assets"]
    assert KEY_ERROR in failures[0].step_failure_data.error.message
    assert not bad.get_asset_materialization_events()


@pytest.mark.parametrize("name", ["monthly_retraining", "daily_scoring"])
def test_schedule_tick_requests_only_the_good_clients(workspace, name, caplog):
    from bettercat_assets.schedules import build_schedules

    (schedule,) = [s for s in build_schedules(_partitions(workspace)) if s.name == name]
    with (
        instance_for_test() as instance,
        build_schedule_context(
            instance=instance,
            resources={"clients": workspace.resources()["clients"]},
            scheduled_execution_time=datetime(2026, 3, 1, 2, tzinfo=timezone.utc),
        ) as context,
    ):
        context.log.addHandler(caplog.handler)  # the tick's own logger, not in logging's tree
        requests = list(schedule(context))
    ranges = [r.partition_key_range for r in requests]
    assert [(r.start, r.end) for r in ranges] == [("alpha", "alpha")]
    assert any(KEY_ERROR in record.getMessage() for record in caplog.records), caplog.text
