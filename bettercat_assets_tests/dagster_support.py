"""Helpers for tests that drive the Dagster layer in-process: the definitions, one run of the
`client_assets` multi-asset for one client or a range of clients, and reading back what a run
recorded per partition (materializations, check evaluations, the failure it raised).

No pytest import and no fixtures, so any test module (and spawned workers) can use these.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterInstance,
    Definitions,
    EventLogRecord,
    ExecuteInProcessResult,
    materialize,
)

ALL_STAGES = ("training_data", "registered_model", "category_predictions")


@functools.cache
def pipeline_defs(clients_file: str | None = None) -> Definitions:
    """The code location's `Definitions` (default: $BETTERCAT_CLIENTS_FILE), built once."""
    from bettercat_assets.definitions import build_definitions

    return build_definitions(clients_file)


@functools.cache
def client_assets_def(clients_file: str | None = None) -> AssetsDefinition:
    """The `client_assets` multi-asset partitioned by the clients of `clients_file`."""
    from bettercat_assets.assets.client_assets import build_client_assets
    from bettercat_assets.core.config.clients import clients_file_path, load_clients
    from bettercat_assets.partitions import client_partitions

    path = clients_file_path(clients_file)
    return build_client_assets(client_partitions(load_clients(path)))


def day_config(day: str | None) -> dict[str, object]:
    """Run config that fixes the run's training/inference date (None: today, UTC)."""
    return {"ops": {"client_assets": {"config": {"day": day}}}} if day else {}


def materialize_clients(
    selection: Sequence[str],
    client_ids: str | Sequence[str],
    instance: DagsterInstance,
    *,
    resources: Mapping[str, object] | None = None,
    clients_file: str | os.PathLike[str] | None = None,
    day: str | None = None,
    raise_on_error: bool = True,
) -> ExecuteInProcessResult:
    """Materialize the `selection` stages for one client (`partition_key=`) or a contiguous
    range of clients (the range tags a backfill run carries), as one in-process run.

    `resources` default to the code location's (`build_resources`, the session's environment).
    """
    from bettercat_assets.definitions import build_resources
    from bettercat_assets.partitions import range_tags

    ids = [client_ids] if isinstance(client_ids, str) else list(client_ids)
    assert ids, "no client to materialize"
    file = str(clients_file) if clients_file is not None else None
    if resources is None:
        from bettercat_assets.core.config.clients import clients_file_path

        resources = build_resources(clients_file_path(file))
    single = len(ids) == 1
    return materialize(
        [client_assets_def(file)],
        selection=[AssetKey(name) for name in selection],
        partition_key=ids[0] if single else None,
        tags=None if single else range_tags(ids),
        instance=instance,
        resources=dict(resources),
        run_config=day_config(day),
        raise_on_error=raise_on_error,
    )


def latest_record(instance: DagsterInstance, asset: str, partition: str) -> EventLogRecord:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {asset}[{partition}]"
    return records[0]


def metadata(instance: DagsterInstance, asset: str, partition: str) -> dict[str, object]:
    """The metadata values of the latest materialization of `asset[partition]`."""
    record = latest_record(instance, asset, partition)
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def materialized_partitions(result: ExecuteInProcessResult) -> set[tuple[str, str]]:
    """(asset, partition) pairs the run materialized."""
    return {
        (e.asset_key.to_user_string(), e.partition)
        for e in result.get_asset_materialization_events()
    }


def check_evaluations(
    result: ExecuteInProcessResult, partition: str | None = None
) -> list[AssetCheckEvaluation]:
    """The run's check evaluations, only those on `partition` when given."""
    found = result.get_asset_check_evaluations()
    return [e for e in found if partition is None or e.partition == partition]


def checks_by_name(
    result: ExecuteInProcessResult, partition: str, asset: str | None = None
) -> dict[str, AssetCheckEvaluation]:
    """One evaluation per check name on `partition` (of `asset` when given); no duplicates."""
    found = [
        e
        for e in check_evaluations(result, partition)
        if asset is None or e.asset_key == AssetKey(asset)
    ]
    named = {e.check_name: e for e in found}
    assert len(named) == len(found), [e.check_name for e in found]
    return named


def step_failure_messages(result: ExecuteInProcessResult) -> list[str]:
    """The error message of each failed step of the run."""
    return [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]


def failed_clients(result: ExecuteInProcessResult) -> dict[str, str]:
    """client id -> reason, from the `failed_clients` metadata of the run's `Failure`."""
    found: dict[str, str] = {}
    for event in result.all_events:
        if event.is_step_failure:
            user = event.step_failure_data.user_failure_data
            entry = user.metadata.get("failed_clients") if user else None
            if entry is not None:
                found.update(entry.value)
    return found


def stale_status(
    instance: DagsterInstance, asset: str, partition: str, clients_file: str | None = None
):
    """(resolver, status) of `asset[partition]` as the UI computes it."""
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, [client_assets_def(clients_file)])
    return resolver, resolver.get_status(AssetKey(asset), partition)


def rescore_requests(
    instance: DagsterInstance,
    cursor: object | None,
    clients_file: str | os.PathLike[str] | None = None,
    resources: Mapping[str, object] | None = None,
) -> tuple[list[str], object]:
    """One evaluation of the re-scoring automation condition, as the automation sensor ticks:
    the client partitions of `category_predictions` it requests, and the cursor for the next."""
    from dagster import AssetSelection, evaluate_automation_conditions

    from bettercat_assets.core.config.clients import clients_file_path
    from bettercat_assets.definitions import build_resources

    file = str(clients_file) if clients_file is not None else None
    if resources is None:
        resources = build_resources(clients_file_path(file))
    defs = Definitions(assets=[client_assets_def(file)], resources=dict(resources))
    result = evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        asset_selection=AssetSelection.assets("category_predictions"),
        cursor=cursor,
    )
    requested = result.get_requested_partitions(AssetKey("category_predictions"))
    return sorted(requested), result.cursor
