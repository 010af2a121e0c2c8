"""Re-scoring follows a new champion: declarative automation on `category_predictions`."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from bettercat_assets.assets import CATEGORY_PREDICTIONS

RESCORE_SENSOR = "rescore_on_new_champion"


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
