"""`training_data`: a client's validated training table, with data-quality checks."""

from dagster import (
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from bettercat_assets.assets import CODE_VERSION, GROUP, OWNERS
from bettercat_assets.checks import check_specs, to_check_result
from bettercat_assets.core.data import file_fingerprint, read_raw_training_file
from bettercat_assets.core.errors import BettercatError
from bettercat_assets.core.quality import TRAINING_DATA_CHECKS, training_data_outcomes
from bettercat_assets.partitions import client_partitions
from bettercat_assets.resources import ClientsResource


@asset(
    partitions_def=client_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pandas", "csv"},
    code_version=CODE_VERSION,
    description="A client's training table (`train/client_id=<id>/data_train.csv.gz`), checked "
    "for schema, nulls, size, classes and duplicate products before any model trains on it.",
    check_specs=check_specs(
        "training_data", {n: f.__doc__ for n, f in TRAINING_DATA_CHECKS.items()}, blocking=True
    ),
)
def training_data(context: AssetExecutionContext, clients: ClientsResource) -> MaterializeResult:
    try:
        cfg = clients.client(context.partition_key)
        path = clients.layout.train_file(cfg.client_id)
        raw = read_raw_training_file(cfg, path)
        fingerprint = file_fingerprint(path)
    except BettercatError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    label = cfg.label_column
    return MaterializeResult(
        metadata={
            "rows": MetadataValue.int(len(raw)),
            "classes": MetadataValue.int(int(raw[label].nunique()) if label in raw else 0),
            "features": MetadataValue.json(list(cfg.features)),
            "path": MetadataValue.path(str(path)),
            "sha256": MetadataValue.text(fingerprint),
        },
        data_version=DataVersion(fingerprint[:16]),
        check_results=[to_check_result(o) for o in training_data_outcomes(cfg, raw, path)],
    )
