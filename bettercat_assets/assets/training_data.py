"""`training_data`: a client's validated training table, with data-quality checks."""

from __future__ import annotations

from dagster import AssetSpec, MetadataValue, PartitionsDefinition

from bettercat_assets.assets import CODE_VERSION, GROUP, OWNERS, TRAINING_DATA
from bettercat_assets.assets.outcomes import ClientOutcome
from bettercat_assets.checks import check_specs
from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.data.loading import file_fingerprint, read_raw_training_file
from bettercat_assets.core.data.quality import TRAINING_DATA_CHECKS, training_data_outcomes


def training_data_spec(partitions: PartitionsDefinition) -> AssetSpec:
    return AssetSpec(
        TRAINING_DATA,
        partitions_def=partitions,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"pandas", "csv"},
        code_version=CODE_VERSION,
        skippable=True,
        description="A client's training table, train/client_id=<id>/data_train.csv.gz, "
        "checked for schema, nulls, size, classes and duplicate products before any model "
        "trains on it.",
    )


def training_data_checks(partitions: PartitionsDefinition):
    descriptions = {n: f.__doc__ for n, f in TRAINING_DATA_CHECKS.items()}
    return check_specs("training_data", descriptions, blocking=True, partitions_def=partitions)


def validate_training_data(cfg: ClientConfig, layout: DataLayout) -> ClientOutcome:
    """Read and check one client's training file; a failed check blocks its model."""
    try:
        path = layout.train_file(cfg.client_id)
        raw = read_raw_training_file(cfg, path)
        fingerprint = file_fingerprint(path)
    except BettercatError as exc:
        return ClientOutcome.failed(str(exc))
    label = cfg.label_column
    checks = training_data_outcomes(cfg, raw, path)
    failed = [c for c in checks if not c.passed]
    return ClientOutcome(
        materialized=True,
        metadata={
            "rows": MetadataValue.int(len(raw)),
            "classes": MetadataValue.int(int(raw[label].nunique()) if label in raw else 0),
            "features": MetadataValue.json(list(cfg.features)),
            "path": MetadataValue.path(str(path)),
            "sha256": MetadataValue.text(fingerprint),
        },
        checks=checks,
        error="; ".join(c.description for c in failed) if failed else None,
        data_version=fingerprint[:16],
    )
