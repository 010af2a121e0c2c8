"""`rescore_on_new_champion`: one scoring run per client whose @champion moved, never twice.

Fast: no Spark, no MLflow. Runless `registered_model` materializations stand in for training
runs and operator roll-backs (both record `champion_changed` in the metadata).
"""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, RunRequest, build_multi_asset_sensor_context, instance_for_test

from bettercat_assets.assets.registered_model import registered_model
from bettercat_assets.champion_events import champion_materialization
from bettercat_assets.definitions import defs
from bettercat_assets.sensors import rescore_on_new_champion

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def _module_instance():
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def instance(_module_instance):
    """One instance per module (creating one costs seconds), emptied before every test."""
    _module_instance.wipe()
    assert not _module_instance.fetch_materializations(registered_model.key, limit=1).records
    return _module_instance


@pytest.fixture(scope="module")
def client_ids(registry) -> list[str]:
    ids = list(registry.client_ids)
    assert len(ids) == 10, "the fixture clients.yaml has ten clients"
    return ids


def report(instance: DagsterInstance, client_id: str, *, changed: bool = True, version: int = 2):
    previous = version - 1 if changed else version
    instance.report_runless_asset_event(
        champion_materialization(client_id, f"{client_id}_model", version, previous)
    )


def tick(instance: DagsterInstance, cursor: str | None) -> tuple[list[RunRequest], str | None]:
    """One sensor tick as the daemon runs it: a fresh context from the stored cursor string."""
    context = build_multi_asset_sensor_context(
        monitored_assets=[registered_model.key], instance=instance, cursor=cursor, definitions=defs
    )
    results = list(rescore_on_new_champion(context) or [])
    # Direct invocation updates the cursor before the generator body runs; the daemon does it
    # after consuming the results, so do the same here.
    context.update_cursor_after_evaluation()
    assert all(isinstance(r, RunRequest) for r in results), results
    return results, context.cursor


def test_ten_champion_changes_give_ten_runs_then_none(instance, client_ids):
    for client_id in client_ids:
        report(instance, client_id)

    requests, cursor = tick(instance, None)
    assert sorted(r.partition_key for r in requests) == sorted(client_ids)
    assert len(requests) == 10
    assert len({r.run_key for r in requests}) == 10
    assert cursor, "the sensor must advance its cursor past the events it read"

    again, cursor_after = tick(instance, cursor)
    assert again == []
    assert cursor_after == cursor


def test_new_change_after_a_tick_requests_only_that_client(instance, client_ids):
    for client_id in client_ids:
        report(instance, client_id)
    first, cursor = tick(instance, None)
    assert len(first) == 10

    report(instance, "charlie", version=3)
    second, _ = tick(instance, cursor)
    assert [r.partition_key for r in second] == ["charlie"]
    assert second[0].run_key not in {r.run_key for r in first}


def test_unchanged_champion_requests_nothing(instance, client_ids):
    for client_id in client_ids:
        report(instance, client_id, changed=False)

    requests, cursor = tick(instance, None)
    assert requests == []
    # The events were still consumed: a later change yields only that client.
    report(instance, "alpha")
    later, _ = tick(instance, cursor)
    assert [r.partition_key for r in later] == ["alpha"]


def test_two_changes_for_one_client_in_one_tick_give_one_run(instance):
    report(instance, "bravo", version=2)
    report(instance, "bravo", version=3)
    report(instance, "delta", changed=False)

    requests, _ = tick(instance, None)
    assert [r.partition_key for r in requests] == ["bravo"]
    # The request points at the latest change, so a roll-back right after is not deduplicated
    # away by the run key of the earlier one.
    latest = max(
        r.storage_id
        for r in instance.fetch_materializations(registered_model.key, limit=10).records
        if r.partition_key == "bravo"
    )
    assert requests[0].run_key == f"rescore-bravo-{latest}"


def test_daemon_evaluation_path_round_trips_the_cursor(instance, client_ids):
    """`evaluate_tick` is what the sensor daemon calls; its cursor is what gets stored."""
    from dagster import build_sensor_context

    for client_id in client_ids:
        report(instance, client_id)

    first = rescore_on_new_champion.evaluate_tick(
        build_sensor_context(instance=instance, definitions=defs)
    )
    assert sorted(r.partition_key for r in first.run_requests) == sorted(client_ids)
    assert all(r.job_name in (None, "score_clients") for r in first.run_requests)

    second = rescore_on_new_champion.evaluate_tick(
        build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
    )
    assert list(second.run_requests or []) == []
