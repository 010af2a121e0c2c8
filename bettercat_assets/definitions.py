"""The one `Definitions` of the bettercat code location, built when Dagster loads it.

Settings come from the environment through `dg.EnvVar` where a variable is set (the UI shows
which), else from the field defaults; nothing is read at import.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from bettercat_assets.assets.client_assets import build_client_assets
from bettercat_assets.assets.fleet import build_fleet_asset
from bettercat_assets.champion_events import build_promote_champion_job
from bettercat_assets.config_report import warn_about_problems
from bettercat_assets.core.config.clients import CLIENTS_FILE_ENV, clients_file_path, load_clients
from bettercat_assets.core.config.settings import (
    ARTIFACT_ROOT_ENV,
    DATA_PREFIX_ENV,
    TRACKING_URI_ENV,
    default_artifact_root,
    default_data_prefix,
    default_tracking_uri,
)
from bettercat_assets.core.spark.session import SPARK_MASTER_ENV, SPARK_REMOTE_ENV, spark_target
from bettercat_assets.jobs import build_jobs
from bettercat_assets.partitions import client_partitions
from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
from bettercat_assets.schedules import build_schedules
from bettercat_assets.sensors import build_monitoring_sensor, build_rescore_sensor

SPARK_CONF_ENV = "BETTERCAT_SPARK_CONF"


def _env_or(name: str, default: str | None) -> dg.EnvVar | str | None:
    """`EnvVar(name)` when the variable is set, so the UI shows its source; else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources(clients_file: Path) -> dict[str, dg.ConfigurableResource]:
    kind, target = spark_target()
    return {
        "clients": ClientsResource(
            clients_file=_env_or(CLIENTS_FILE_ENV, str(clients_file.resolve())),
            data_prefix=_env_or(DATA_PREFIX_ENV, str(default_data_prefix())),
        ),
        "mlflow": MlflowResource(
            tracking_uri=_env_or(TRACKING_URI_ENV, default_tracking_uri()),
            artifact_root=_env_or(ARTIFACT_ROOT_ENV, default_artifact_root()),
        ),
        "spark": SparkResource(
            master=_env_or(SPARK_MASTER_ENV, target) if kind == "master" else "local[*]",
            remote=_env_or(SPARK_REMOTE_ENV, target) if kind == "remote" else "",
            extra_conf_json=_env_or(SPARK_CONF_ENV, ""),
        ),
    }


def build_definitions(clients_file: str | os.PathLike[str] | None = None) -> dg.Definitions:
    """Everything for the clients in `clients_file` (default $BETTERCAT_CLIENTS_FILE)."""
    path = clients_file_path(clients_file)
    registry = load_clients(path)
    warn_about_problems(registry)  # bad entries keep their partition; their runs fail clearly
    partitions = client_partitions(registry)
    return dg.Definitions(
        assets=[build_client_assets(partitions), build_fleet_asset(partitions)],
        jobs=[*build_jobs(partitions), build_promote_champion_job(partitions.get_partition_keys())],
        schedules=build_schedules(partitions),
        sensors=[build_rescore_sensor(), build_monitoring_sensor()],
        resources=build_resources(path),
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Dagster calls this when the code location loads (and again on reload)."""
    return build_definitions()
