"""Asset-check specs and per-client results: every spec is partitioned, so one client's
failure blocks only that client."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
)

from bettercat_assets.core.data.quality import CheckOutcome


def plain_text(description: str | None) -> str | None:
    """A description as the Catalog shows it, which does not render Markdown: one paragraph,
    no backticks (check descriptions come from docstrings written for the code)."""
    text = " ".join((description or "").replace("`", "").split())
    return text or None


def check_specs(
    asset: str,
    descriptions: Mapping[str, str | None],
    blocking: bool,
    partitions_def: PartitionsDefinition,
) -> list[AssetCheckSpec]:
    """One partitioned spec per check name.

    Partitioned check specs are a Dagster preview feature, used here on purpose (a client's
    check result belongs to its partition); `test_dagster_partition_api.py` pins the behaviour.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreviewWarning)
        return [
            AssetCheckSpec(
                name,
                asset=asset,
                partitions_def=partitions_def,
                blocking=blocking,
                description=plain_text(description),
            )
            for name, description in descriptions.items()
        ]


def _metadata_value(value: object) -> object:
    return MetadataValue.json(value) if isinstance(value, (dict, list)) else value


def to_check_evaluation(
    outcome: CheckOutcome, asset: AssetKey, partition: str, blocking: bool
) -> AssetCheckEvaluation:
    """An ERROR-severity evaluation on the client's own partition, saying what is wrong."""
    return AssetCheckEvaluation(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=AssetCheckSeverity.ERROR,
        description=outcome.description,
        metadata={
            "detail": outcome.description,
            **{k: _metadata_value(v) for k, v in outcome.metadata.items() if v is not None},
        },
        blocking=blocking,
        partition=partition,
    )
