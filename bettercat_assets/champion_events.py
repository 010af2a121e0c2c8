"""Moving `@champion` by hand (roll back or forward), from the CLI or the Dagster UI.

Either way a `registered_model` materialization with `champion_changed=True` is recorded for the
client's partition, so the re-scoring sensor scores with the new champion.
"""

import enum
import hashlib
import os
from collections.abc import Sequence

from dagster import (
    AssetMaterialization,
    Config,
    DagsterInstance,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)
from pydantic import Field

from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.tracking import runs as tracking
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
            **(
                {"previous_champion_version": MetadataValue.int(previous)}
                if previous is not None
                else {}
            ),
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


def client_id_enum(client_ids: Sequence[str]) -> type[enum.Enum]:
    """A config enum of the known client ids: the Launchpad offers them and rejects others.

    Dagster identifies config types by name (and memoizes config shapes by it), so the name
    carries a digest of the ids: two client lists never share one schema.
    """
    if not client_ids:
        raise ValueError("promote_champion_job needs at least one client id")
    digest = hashlib.sha256("\n".join(client_ids).encode()).hexdigest()[:8]
    return enum.Enum(f"ClientId_{digest}", [(cid, cid) for cid in client_ids], module=__name__)


def build_promote_champion_job(client_ids: Sequence[str]) -> JobDefinition:
    """`promote_champion_job` for these clients (the partitions of the code location).

    `client_id` is an enum of the client ids, so Dagster validates it when the run config is
    checked (the Launchpad flags an unknown id and keeps Launch disabled) instead of failing
    the run.
    """
    client_id_type = client_id_enum(client_ids)

    class PromoteChampionConfig(Config):
        """Which client, and which registered version becomes `@champion`."""

        client_id: client_id_type = Field(description="A client id from clients.yaml.")
        version: int = Field(description="The registered version to make @champion.")

    @op(
        description="Move a client's @champion alias to a registered version (roll back or "
        "forward).",
        out={},  # yields only the materialization event; no output value
    )
    def promote_champion(
        context: OpExecutionContext,
        config: PromoteChampionConfig,
        clients: ClientsResource,
        mlflow: MlflowResource,
    ):
        event = _promote(context, config.client_id.value, config.version, clients, mlflow)
        if event is not None:
            yield event

    @job(
        description="Roll a client's @champion back (or forward) from the Launchpad; "
        "re-scoring follows."
    )
    def promote_champion_job():
        promote_champion()

    return promote_champion_job


def _promote(
    context: OpExecutionContext,
    client_id: str,
    version: int,
    clients: ClientsResource,
    mlflow: MlflowResource,
) -> AssetMaterialization | None:
    """Move the alias; the event to record, or None when `version` already is @champion."""
    try:
        cfg = clients.client(client_id)
        client = tracking.mlflow_client(mlflow.settings)
        before = tracking.champion_version(client, cfg.model_name)
        tracking.get_version(client, cfg.model_name, version, cfg.client_id)
    except BettercatError as exc:  # unknown version: an operator typo, not retried
        raise Failure(description=str(exc), allow_retries=False) from None
    previous = int(before.version) if before else None
    if previous == version:
        context.log.info(f"{cfg.model_name}: v{previous} already is @champion; nothing to re-score")
        return None
    tracking.set_champion(client, cfg.model_name, version)
    context.log.info(f"{cfg.model_name}: @champion v{previous} -> v{version}")
    return champion_materialization(cfg.client_id, cfg.model_name, version, previous)
