"""Champion/challenger in-process: a degrading retrain is registered but never promoted, an
operator's roll-back (CLI or job) re-scores exactly once, and new training data makes the model
stale. A private workspace (clients, data, MLflow store, Dagster instance) isolates the versions.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterInstance, instance_for_test

from bettercat_assets_tests.dagster_support import (
    checks_by_name,
    failed_clients,
    materialized_partitions,
    stale_status,
    step_failure_messages,
)
from bettercat_assets_tests.lifecycle_support import (
    Workspace,
    latest_record,
    make_workspace,
    metadata,
    rescore_tick,
    shuffle_labels,
)

MODEL_STAGES = ["training_data", "registered_model"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("lifecycle"))


@pytest.fixture(scope="module")
def instance(ws):
    with instance_for_test(temp_dir=str(ws.dagster_home)) as inst:
        yield inst


@pytest.fixture(scope="module")
def assets(ws):
    return ws.assets_def


def champion(ws: Workspace, model_name: str) -> int | None:
    from bettercat_assets.core.tracking import runs as tracking

    mv = tracking.champion_version(ws.mlflow_client(), model_name)
    return int(mv.version) if mv else None


# --- 2. a degrading retrain --------------------------------------------------------------------


@pytest.fixture(scope="module")
def degraded(ws, instance):
    """india: a good champion v1, then a retrain on label-shuffled data (v2): (bad run, re-scoring
    requests after it, good run)."""
    ws.generate("india")
    good = ws.materialize(MODEL_STAGES, "india", instance)
    assert good.success
    assert champion(ws, "india_model") == 1
    _, cursor = rescore_tick(ws, instance, None)

    shuffle_labels(ws.layout.train_file("india"), "category_id", seed=0)
    bad = ws.materialize(["registered_model"], "india", instance, raise_on_error=False)
    requests, _ = rescore_tick(ws, instance, cursor)
    return bad, requests, good


def test_degraded_model_is_registered_but_not_promoted(degraded, ws):
    client = ws.mlflow_client()
    v2 = client.get_model_version("india_model", "2")
    assert v2.tags["gate_status"] == "failed"
    assert "top5_accuracy" in v2.tags["gate_reason"]
    assert v2.tags["run_id"] == v2.run_id
    assert champion(ws, "india_model") == 1, "the champion alias must not move"
    run = client.get_run(v2.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["gate_status"] == "failed"


def test_degraded_gate_check_names_metric_and_both_values(degraded):
    bad, _, _ = degraded
    # The failed gate fails india's partition of the step (no materialization, see below).
    assert not bad.success
    check = checks_by_name(bad, "india", "registered_model")["quality_gate"]
    assert not check.passed and check.blocking and check.partition == "india"
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["metric"] == "top5_accuracy" and meta["champion_version"] == 1
    text = check.description
    assert "top5_accuracy" in text and "v2" in text and "v1" in text
    assert f"{meta['value']:.4f}" in text, (meta, text)
    assert f"{meta['champion_value']:.4f}" in text, (meta, text)


def test_degraded_model_is_not_materialized_and_the_failure_says_champion_unchanged(
    degraded, instance, ws
):
    """By design a failed gate is a failed `registered_model` partition: the latest
    materialization stays the champion's (v1), the run's failure names client, gate and v1."""
    bad, _, good = degraded
    assert materialized_partitions(bad) == set()
    record = latest_record(instance, "registered_model", "india")
    assert record.run_id == good.run_id
    meta = metadata(instance, "registered_model", "india")
    assert meta["model_version"] == 1
    assert meta["champion_version"] == 1
    reason = failed_clients(bad)["india"]
    assert reason.startswith("registered_model: quality gate failed for client 'india' v2: ")
    assert reason.endswith("@champion stays v1"), reason
    assert "top5_accuracy" in reason
    (message,) = step_failure_messages(bad)
    assert "1 of 1 client(s) failed" in message and reason in message
    # the learned-nothing model scores no better than "the 5 most frequent categories"
    v2 = ws.mlflow_client().get_model_version("india_model", "2")
    metrics = ws.mlflow_client().get_run(v2.run_id).data.metrics
    assert metrics["top5_accuracy"] <= metrics["prior_top5_accuracy"]


def test_degraded_retrain_requests_no_rescoring(degraded):
    _, requests, _ = degraded
    assert requests == []


def test_cli_train_on_degraded_data_exits_1_naming_the_metric(degraded, ws, monkeypatch):
    from bettercat_assets.cli import main

    ws.apply(monkeypatch)
    result = CliRunner().invoke(main, ["train", "--client-id", "india"])
    assert result.exit_code == 1, (result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "quality gate failed, champion unchanged (v1)" in errors[0]
    assert "top5_accuracy" in errors[0]
    # v1 was refit on every row of the file (the shuffled file has the same products): it is
    # compared by the metric its own training logged, not re-scored on rows it was fit on
    assert re.search(r"champion v1's 0\.\d{4} logged by its own training", errors[0]), errors[0]
    assert "india_model v3" in result.stdout
    assert champion(ws, "india_model") == 1


# --- 3. roll-back from the CLI and from the Launchpad -------------------------------------------


@pytest.fixture(scope="module")
def juliet(ws, instance):
    """juliet with two passing versions: v2 is champion."""
    ws.generate("juliet")
    for _ in range(2):
        result = ws.materialize(MODEL_STAGES, "juliet", instance)
        assert result.success
    assert champion(ws, "juliet_model") == 2
    return ws


def test_cli_promote_rolls_back_and_rescoring_follows_once(juliet, instance, monkeypatch):
    from bettercat_assets.cli import main

    ws = juliet
    _, cursor = rescore_tick(ws, instance, None)
    ws.apply(monkeypatch)  # DAGSTER_HOME is the test instance's directory
    result = CliRunner().invoke(main, ["promote", "--client-id", "juliet", "--version", "1"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "juliet_model: @champion v2 -> v1" in result.stdout
    assert f"reported to Dagster at {ws.dagster_home}" in result.stdout
    assert champion(ws, "juliet_model") == 1

    record = latest_record(instance, "registered_model", "juliet")
    assert record.run_id == "", "a runless event from the CLI"
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert meta["champion_changed"] is True
    assert (meta["champion_version"], meta["previous_champion_version"]) == (1, 2)

    requests, cursor = rescore_tick(ws, instance, cursor)
    assert requests == ["juliet"]
    assert rescore_tick(ws, instance, cursor)[0] == [], "never twice for one change"


def test_cli_promote_to_the_current_champion_reports_nothing(juliet, instance, monkeypatch):
    from bettercat_assets.cli import main

    ws = juliet
    current = champion(ws, "juliet_model")
    _, cursor = rescore_tick(ws, instance, None)
    ws.apply(monkeypatch)
    result = CliRunner().invoke(
        main, ["promote", "--client-id", "juliet", "--version", str(current)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "already was @champion" in result.stdout
    assert rescore_tick(ws, instance, cursor)[0] == []


def test_cli_promote_unknown_version_is_a_user_error(juliet, monkeypatch):
    from bettercat_assets.cli import main

    juliet.apply(monkeypatch)
    result = CliRunner().invoke(main, ["promote", "--client-id", "juliet", "--version", "99"])
    assert result.exit_code == 2
    assert "has no version 99" in result.stderr and "Traceback" not in result.output


def _promote_with_job(ws: Workspace, instance: DagsterInstance, version: int, **kwargs):
    from bettercat_assets.champion_events import build_promote_champion_job
    from bettercat_assets.core.config.clients import load_clients

    job = build_promote_champion_job(load_clients(ws.clients_file).client_ids)
    return job.execute_in_process(
        run_config={
            "ops": {"promote_champion": {"config": {"client_id": "juliet", "version": version}}}
        },
        instance=instance,
        resources={k: v for k, v in ws.resources().items() if k != "spark"},
        **kwargs,
    )


def test_launchpad_job_rolls_forward_and_rescoring_follows_once(juliet, instance):
    ws = juliet
    target = 1 if champion(ws, "juliet_model") == 2 else 2
    before = champion(ws, "juliet_model")
    _, cursor = rescore_tick(ws, instance, None)
    result = _promote_with_job(ws, instance, target)
    assert result.success
    assert champion(ws, "juliet_model") == target

    record = latest_record(instance, "registered_model", "juliet")
    assert record.run_id == result.run_id
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert meta["champion_changed"] is True
    assert (meta["champion_version"], meta["previous_champion_version"]) == (target, before)

    requests, cursor = rescore_tick(ws, instance, cursor)
    assert requests == ["juliet"]
    assert rescore_tick(ws, instance, cursor)[0] == []


def test_launchpad_job_with_unknown_version_fails_clearly(juliet, instance):
    before = champion(juliet, "juliet_model")
    result = _promote_with_job(juliet, instance, 99, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "has no version 99" in failure.step_failure_data.error.message
    assert champion(juliet, "juliet_model") == before


# --- 6. staleness ------------------------------------------------------------------------------


def test_assets_have_code_versions(assets):
    from bettercat_assets import __version__

    names = {key.to_user_string() for key in assets.keys}
    assert names == {"training_data", "registered_model", "category_predictions"}
    for key in assets.keys:
        assert assets.code_versions_by_key[key] == __version__


def _status(instance: DagsterInstance, ws: Workspace, key: str):
    return stale_status(instance, key, "foxtrot", str(ws.clients_file))


def test_new_training_data_makes_the_model_stale(ws, instance):
    from dagster._core.definitions.data_version import StaleStatus

    ws.generate("foxtrot", seed=3)
    result = ws.materialize(MODEL_STAGES, "foxtrot", instance)
    assert result.success
    data_meta = metadata(instance, "training_data", "foxtrot")
    version = instance.get_latest_data_version_record(AssetKey("training_data"), False, "foxtrot")
    assert version is not None
    record = latest_record(instance, "training_data", "foxtrot")
    tags = record.asset_materialization.tags
    assert tags["dagster/data_version"] == data_meta["sha256"][:16]
    assert _status(instance, ws, "registered_model")[1] == StaleStatus.FRESH

    # Same file again: same data version, the model stays fresh.
    assert ws.materialize(["training_data"], "foxtrot", instance).success
    assert _status(instance, ws, "registered_model")[1] == StaleStatus.FRESH

    # New file contents: new data version, the model is stale because of training_data.
    ws.generate("foxtrot", seed=4)
    assert ws.materialize(["training_data"], "foxtrot", instance).success
    assert metadata(instance, "training_data", "foxtrot")["sha256"] != data_meta["sha256"]
    resolver, status = _status(instance, ws, "registered_model")
    assert status == StaleStatus.STALE
    causes = resolver.get_stale_causes(AssetKey("registered_model"), "foxtrot")
    assert any(
        c.dependency and c.dependency.asset_key == AssetKey("training_data") for c in causes
    ), causes
