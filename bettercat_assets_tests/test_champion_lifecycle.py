"""Champion/challenger in-process: a degrading retrain is registered but never promoted, an
operator's roll-back (CLI or job) re-scores exactly once, and new training data makes the model
stale. A private workspace (clients, data, MLflow store, Dagster instance) isolates the versions.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterInstance, instance_for_test, materialize

from bettercat_assets_tests.lifecycle_support import (
    Workspace,
    latest_record,
    make_workspace,
    metadata,
    sensor_tick,
    shuffle_labels,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("lifecycle"))


@pytest.fixture(scope="module")
def instance(ws):
    with instance_for_test(temp_dir=str(ws.dagster_home)) as inst:
        yield inst


@pytest.fixture(scope="module")
def assets():
    from bettercat_assets.assets.category_predictions import category_predictions
    from bettercat_assets.assets.registered_model import registered_model
    from bettercat_assets.assets.training_data import training_data

    return training_data, registered_model, category_predictions


def champion(ws: Workspace, model_name: str) -> int | None:
    from bettercat_assets.core import tracking

    mv = tracking.champion_version(ws.mlflow_client(), model_name)
    return int(mv.version) if mv else None


# --- 2. a degrading retrain --------------------------------------------------------------------


@pytest.fixture(scope="module")
def degraded(ws, instance, assets):
    """india: a good champion v1, then a retrain on label-shuffled data (v2)."""
    training_data, registered_model, _ = assets
    ws.generate("india")
    good = materialize(
        [training_data, registered_model],
        partition_key="india",
        instance=instance,
        resources=ws.resources(),
    )
    assert good.success
    assert champion(ws, "india_model") == 1
    _, cursor = sensor_tick(instance, None)

    shuffle_labels(ws.layout.train_file("india"), "category_id", seed=0)
    bad = materialize(
        [registered_model],
        partition_key="india",
        instance=instance,
        resources=ws.resources(),
        raise_on_error=False,
    )
    requests, _ = sensor_tick(instance, cursor)
    return bad, requests


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
    bad, _ = degraded
    # The blocking check fails the step after the materialization was recorded.
    assert not bad.success
    (check,) = [e for e in bad.get_asset_check_evaluations() if e.check_name == "quality_gate"]
    assert not check.passed
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["metric"] == "top5_accuracy" and meta["champion_version"] == 1
    text = check.description
    assert "top5_accuracy" in text and "v2" in text and "v1" in text
    assert f"{meta['value']:.4f}" in text, (meta, text)
    assert f"{meta['champion_value']:.4f}" in text, (meta, text)


def test_degraded_materialization_says_champion_unchanged(degraded, instance):
    meta = metadata(instance, "registered_model", "india")
    assert meta["model_version"] == 2
    assert meta["champion_version"] == 1
    assert meta["champion_changed"] is False
    # the learned-nothing model scores no better than "the 5 most frequent categories"
    assert meta["top5_accuracy"] <= meta["prior_top5_accuracy"]


def test_degraded_retrain_requests_no_rescoring(degraded):
    _, requests = degraded
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
    assert re.search(r"champion v1: 0\.\d{4}", errors[0]), errors[0]
    assert "india_model v3" in result.stdout
    assert champion(ws, "india_model") == 1


# --- 3. roll-back from the CLI and from the Launchpad -------------------------------------------


@pytest.fixture(scope="module")
def juliet(ws, instance, assets):
    """juliet with two passing versions: v2 is champion."""
    training_data, registered_model, _ = assets
    ws.generate("juliet")
    for _ in range(2):
        result = materialize(
            [training_data, registered_model],
            partition_key="juliet",
            instance=instance,
            resources=ws.resources(),
        )
        assert result.success
    assert champion(ws, "juliet_model") == 2
    return ws


def test_cli_promote_rolls_back_and_rescoring_follows_once(juliet, instance, monkeypatch):
    from bettercat_assets.cli import main

    ws = juliet
    _, cursor = sensor_tick(instance, None)
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

    requests, cursor = sensor_tick(instance, cursor)
    assert [r.partition_key for r in requests] == ["juliet"]
    assert sensor_tick(instance, cursor)[0] == [], "never twice for one change"


def test_cli_promote_to_the_current_champion_reports_nothing(juliet, instance, monkeypatch):
    from bettercat_assets.cli import main

    ws = juliet
    current = champion(ws, "juliet_model")
    _, cursor = sensor_tick(instance, None)
    ws.apply(monkeypatch)
    result = CliRunner().invoke(
        main, ["promote", "--client-id", "juliet", "--version", str(current)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "already was @champion" in result.stdout
    assert sensor_tick(instance, cursor)[0] == []


def test_cli_promote_unknown_version_is_a_user_error(juliet, monkeypatch):
    from bettercat_assets.cli import main

    juliet.apply(monkeypatch)
    result = CliRunner().invoke(main, ["promote", "--client-id", "juliet", "--version", "99"])
    assert result.exit_code == 2
    assert "has no version 99" in result.stderr and "Traceback" not in result.output


def _promote_with_job(ws: Workspace, instance: DagsterInstance, version: int, **kwargs):
    from bettercat_assets.champion_events import promote_champion_job

    return promote_champion_job.execute_in_process(
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
    _, cursor = sensor_tick(instance, None)
    result = _promote_with_job(ws, instance, target)
    assert result.success
    assert champion(ws, "juliet_model") == target

    record = latest_record(instance, "registered_model", "juliet")
    assert record.run_id == result.run_id
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert meta["champion_changed"] is True
    assert (meta["champion_version"], meta["previous_champion_version"]) == (target, before)

    requests, cursor = sensor_tick(instance, cursor)
    assert [r.partition_key for r in requests] == ["juliet"]
    assert sensor_tick(instance, cursor)[0] == []


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

    for asset in assets:
        assert asset.code_versions_by_key[asset.key] == __version__


def _status(instance: DagsterInstance, assets, key: str):
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, list(assets))
    return resolver, resolver.get_status(AssetKey(key), "foxtrot")


def test_new_training_data_makes_the_model_stale(ws, instance, assets):
    from dagster._core.definitions.data_version import StaleStatus

    training_data, registered_model, _ = assets
    ws.generate("foxtrot", seed=3)
    result = materialize(
        [training_data, registered_model],
        partition_key="foxtrot",
        instance=instance,
        resources=ws.resources(),
    )
    assert result.success
    data_meta = metadata(instance, "training_data", "foxtrot")
    version = instance.get_latest_data_version_record(AssetKey("training_data"), False, "foxtrot")
    assert version is not None
    record = latest_record(instance, "training_data", "foxtrot")
    tags = record.asset_materialization.tags
    assert tags["dagster/data_version"] == data_meta["sha256"][:16]
    assert _status(instance, assets, "registered_model")[1] == StaleStatus.FRESH

    # Same file again: same data version, the model stays fresh.
    assert materialize(
        [training_data], partition_key="foxtrot", instance=instance, resources=ws.resources()
    ).success
    assert _status(instance, assets, "registered_model")[1] == StaleStatus.FRESH

    # New file contents: new data version, the model is stale because of training_data.
    ws.generate("foxtrot", seed=4)
    assert materialize(
        [training_data], partition_key="foxtrot", instance=instance, resources=ws.resources()
    ).success
    assert metadata(instance, "training_data", "foxtrot")["sha256"] != data_meta["sha256"]
    resolver, status = _status(instance, assets, "registered_model")
    assert status == StaleStatus.STALE
    causes = resolver.get_stale_causes(AssetKey("registered_model"), "foxtrot")
    assert any(
        c.dependency and c.dependency.asset_key == AssetKey("training_data") for c in causes
    ), causes
