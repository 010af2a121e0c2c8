"""Moving `@champion` by hand (roll back or forward), from the CLI or the Dagster UI.

Either way a `registered_model` materialization with `champion_changed=True` is recorded for the
client's partition, so the re-scoring sensor scores with the new champion.
"""

import os

from dagster import (
    AssetMaterialization,
    Config,
    DagsterInstance,
    Failure,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)

from bettercat_assets.core import tracking
from bettercat_assets.core.errors import BettercatError
from bettercat_assets.resources import ClientsResource, MlflowResource


def champion_materialization(
    client_id: str, model_name: str, version: int, previous: int | None
) -> AssetMaterialization:
    return AssetMaterialization(
        asset_key="registered_model",
        partition=client_id,
        description=f"@champion moved from v{previous} to v{version} by an operator",
        metadata={
            "model_name": model_name,
            "model_version": MetadataValue.int(version),
            "champion_version": MetadataValue.int(version),
            "champion_changed": MetadataValue.bool(previous != version),
            "previous_champion_version": MetadataValue.int(previous or 0),
        },
    )


def report_champion_change(
    client_id: str, model_name: str, version: int, previous: int | None
) -> str:
    """Record the change in the Dagster instance at $DAGSTER_HOME, if there is one."""
    if not os.environ.get("DAGSTER_HOME"):
        return "DAGSTER_HOME is not set: nothing reported to Dagster; re-score with `bettercat predict`."
    if previous == version:
        return (
            f"v{version} already was @champion: nothing reported to Dagster, nothing to re-score."
        )
    with DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            champion_materialization(client_id, model_name, version, previous)
        )
    return f"reported to Dagster at {os.environ['DAGSTER_HOME']}: the re-scoring sensor will score {client_id}"


class PromoteChampionConfig(Config):
    """Which client, and which registered version becomes `@champion`."""

    client_id: str
    version: int


@op(
    description="Move a client's @champion alias to a registered version (roll back or forward).",
    out={},  # yields only the materialization event; no output value
)
def promote_champion(
    context: OpExecutionContext,
    config: PromoteChampionConfig,
    clients: ClientsResource,
    mlflow: MlflowResource,
):
    try:
        cfg = clients.client(config.client_id)
        client = tracking.mlflow_client(mlflow.settings)
        before = tracking.champion_version(client, cfg.model_name)
        tracking.get_version(client, cfg.model_name, config.version, cfg.client_id)
    except BettercatError as exc:  # unknown client or version: an operator typo, not retried
        raise Failure(description=str(exc), allow_retries=False) from None
    previous = int(before.version) if before else None
    if previous == config.version:
        context.log.info(f"{cfg.model_name}: v{previous} already is @champion; nothing to re-score")
        return
    tracking.set_champion(client, cfg.model_name, config.version)
    context.log.info(f"{cfg.model_name}: @champion v{previous} -> v{config.version}")
    yield champion_materialization(cfg.client_id, cfg.model_name, config.version, previous)


@job(
    description="Roll a client's @champion back (or forward) from the Launchpad; re-scoring follows."
)
def promote_champion_job():
    promote_champion()
