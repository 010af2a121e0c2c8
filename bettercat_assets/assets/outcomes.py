"""What one stage did for one client, and how a range run turns that into Dagster events.

A run covers many clients (`context.partition_keys`). When every client of a stage succeeds,
the stage is one `MaterializeResult` with each client's metadata on its own partition
(`context.add_asset_metadata(..., partition_key=...)`). Once any client has failed, the run
reports each successful client with its own `AssetMaterialization(partition=...)` and raises
at the end: Dagster then shows exactly the failed clients' partitions as failed, and a
backfill goes on with the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    DataVersion,
    MaterializeResult,
    Output,
)

from bettercat_assets.checks import to_check_evaluation
from bettercat_assets.core.data.quality import CheckOutcome


@dataclass
class ClientOutcome:
    """One client's result for one stage: materialized or not, its metadata, checks, error."""

    materialized: bool
    metadata: dict[str, object] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    error: str | None = None
    data_version: str | None = None

    @classmethod
    def failed(cls, error: str, checks: list[CheckOutcome] | None = None) -> ClientOutcome:
        return cls(materialized=False, error=error, checks=checks or [])

    @property
    def ok(self) -> bool:
        """Downstream stages may run for this client."""
        return self.materialized and self.error is None


def stage_events(
    context: AssetExecutionContext,
    asset: AssetKey,
    outcomes: Mapping[str, ClientOutcome],
    blocking_checks: bool,
    per_partition: bool,
) -> Iterator[object]:
    """Dagster events for one stage; `per_partition` once any client of the run has failed."""
    done = {cid: o for cid, o in outcomes.items() if o.materialized}
    if per_partition:
        for cid, o in done.items():
            yield AssetMaterialization(asset_key=asset, partition=cid, metadata=o.metadata)
    elif done:
        for cid, o in done.items():
            context.add_asset_metadata(o.metadata, asset_key=asset, partition_key=cid)
        # Dagster records one data version per output: exact per client only in a 1-client run.
        single = len(context.partition_keys) == 1
        version = next(iter(done.values())).data_version if single else None
        yield MaterializeResult(
            asset_key=asset, data_version=DataVersion(version) if version else None
        )
    for cid, o in outcomes.items():
        for check in o.checks:
            yield to_check_evaluation(check, asset, cid, blocking_checks)
    yield from _check_outputs(context, asset)


def _check_outputs(context: AssetExecutionContext, asset: AssetKey) -> Iterator[Output]:
    """The (empty) step output of each selected check: the evaluations above carry the results."""
    node = context.assets_def.node_check_specs_by_output_name
    for output_name, spec in node.items():
        key = AssetCheckKey(asset, spec.name)
        if spec.asset_key == asset and key in context.selected_asset_check_keys:
            yield Output(None, output_name=output_name)
