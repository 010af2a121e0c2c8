"""Declarative automation: re-scoring follows a new champion (`category_predictions`); the
fleet view follows scoring, and opted-in clients are retrained on drift (`client_fleet`,
`registered_model`)."""

import warnings

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    BetaWarning,
    DefaultSensorStatus,
)

from bettercat_assets.assets import CATEGORY_PREDICTIONS, REGISTERED_MODEL
from bettercat_assets.assets.fleet import CLIENT_FLEET

RESCORE_SENSOR = "rescore_on_new_champion"
MONITORING_SENSOR = "monitoring_automation"


def build_rescore_sensor() -> AutomationConditionSensorDefinition:
    """Evaluates the re-scoring condition; many clients at once become one backfill, whose runs
    follow the backfill policy (up to MAX_CLIENTS_PER_RUN clients each). Running by default."""
    return AutomationConditionSensorDefinition(
        RESCORE_SENSOR,
        target=AssetSelection.assets(CATEGORY_PREDICTIONS),
        default_status=DefaultSensorStatus.RUNNING,
        emit_backfills=True,
        minimum_interval_seconds=15,
        description="Re-scores exactly the clients whose @champion changed: after a passing "
        "training, bettercat promote or the promote job, never after a failed gate, and not "
        "again for clients their own run already scored.",
    )


def build_monitoring_sensor() -> AutomationConditionSensorDefinition:
    """Evaluates the fleet view's and the retrain-on-drift conditions. On the code server
    (`use_user_code_server`): the retrain condition reads the clients' monitoring summaries
    and the registry. Running by default; it requests nothing for clients that did not opt in."""
    with warnings.catch_warnings():  # use_user_code_server is a Dagster beta parameter
        warnings.simplefilter("ignore", BetaWarning)
        return _monitoring_sensor()


def _monitoring_sensor() -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        MONITORING_SENSOR,
        target=AssetSelection.assets(REGISTERED_MODEL, CLIENT_FLEET),
        default_status=DefaultSensorStatus.RUNNING,
        emit_backfills=True,
        use_user_code_server=True,
        minimum_interval_seconds=30,
        description="Builds the fleet view after scoring; retrains clients with "
        "monitoring: {retrain_on_drift: true} whose scoring drifted, once per new training file.",
    )
