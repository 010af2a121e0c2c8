"""The one `Definitions` of the bettercat code location."""

from __future__ import annotations

import json
import os

from dagster import Definitions

from bettercat_assets.assets.category_predictions import category_predictions
from bettercat_assets.assets.registered_model import registered_model
from bettercat_assets.assets.training_data import training_data
from bettercat_assets.champion_events import promote_champion_job
from bettercat_assets.core.config import clients_file_path
from bettercat_assets.core.settings import (
    default_artifact_root,
    default_data_prefix,
    default_tracking_uri,
)
from bettercat_assets.core.spark_session import spark_target
from bettercat_assets.jobs import client_pipeline_job, scoring_job, training_job
from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
from bettercat_assets.schedules import daily_scoring, monthly_retraining
from bettercat_assets.sensors import rescore_on_new_champion

SPARK_CONF_ENV = "BETTERCAT_SPARK_CONF"


def spark_conf_from_env() -> dict[str, str]:
    """Extra Spark settings as a JSON object in $BETTERCAT_SPARK_CONF (keys keep their case)."""
    raw = os.environ.get(SPARK_CONF_ENV, "").strip()
    if not raw:
        return {}
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"${SPARK_CONF_ENV} is not valid JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise ValueError(f"${SPARK_CONF_ENV} must be a JSON object of Spark settings")
    return {str(k): str(v) for k, v in conf.items()}


def build_resources() -> dict[str, object]:
    """Resources configured from the environment once, when the code location loads."""
    kind, target = spark_target()
    return {
        "clients": ClientsResource(
            clients_file=str(clients_file_path().resolve()), data_prefix=str(default_data_prefix())
        ),
        "mlflow": MlflowResource(
            tracking_uri=default_tracking_uri(), artifact_root=default_artifact_root()
        ),
        "spark": SparkResource(
            master=target if kind == "master" else "local[*]",
            remote=target if kind == "remote" else "",
            spark_config=spark_conf_from_env(),
        ),
    }


defs = Definitions(
    assets=[training_data, registered_model, category_predictions],
    jobs=[training_job, scoring_job, client_pipeline_job, promote_champion_job],
    schedules=[monthly_retraining, daily_scoring],
    sensors=[rescore_on_new_champion],
    resources=build_resources(),
)
