"""Asset-check specs and results: every spec is partitioned, so one client's failure blocks
only that client."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    PreviewWarning,
)

from bettercat_assets.core.quality import CheckOutcome
from bettercat_assets.partitions import client_partitions


def check_specs(
    asset: str, descriptions: Mapping[str, str | None], blocking: bool
) -> list[AssetCheckSpec]:
    """One partitioned spec per check name.

    Partitioned check specs are a Dagster preview feature, used deliberately: without them a
    failed check of one client would block every client. Its PreviewWarning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            AssetCheckSpec(
                name,
                asset=asset,
                partitions_def=client_partitions,
                blocking=blocking,
                description=(description or "").strip() or None,
            )
            for name, description in descriptions.items()
        ]


def _metadata_value(value: object) -> object:
    return MetadataValue.json(value) if isinstance(value, (dict, list)) else value


def to_check_result(outcome: CheckOutcome, asset: str | None = None) -> AssetCheckResult:
    """An ERROR-severity result whose description says what is wrong."""
    return AssetCheckResult(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR,
        description=outcome.description,
        metadata={
            "detail": outcome.description,
            **{k: _metadata_value(v) for k, v in outcome.metadata.items()},
        },
    )
