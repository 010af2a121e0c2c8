"""Re-score a client when its champion changes (new passing model, or an operator's roll-back)."""

import warnings

from dagster import (
    DefaultSensorStatus,
    MultiAssetSensorEvaluationContext,
    RunRequest,
    SupersessionWarning,
    multi_asset_sensor,
)

from bettercat_assets.assets.registered_model import registered_model
from bettercat_assets.jobs import scoring_job

#: Upper bound of model events read per tick; the cursor carries the rest to the next tick.
MAX_EVENTS_PER_TICK = 5000

# A multi-asset sensor is used deliberately (it must target `scoring_job` for exactly the clients
# whose champion moved); do not repeat Dagster's suggestion on every code location load.
warnings.filterwarnings(
    "ignore",
    message="Class `MultiAssetSensorDefinition` is superseded",
    category=SupersessionWarning,
)


def champion_changed(record) -> bool:
    """A materialization whose metadata says the `@champion` alias moved."""
    value = record.asset_materialization.metadata.get("champion_changed")
    return bool(value is not None and value.value)


@multi_asset_sensor(
    monitored_assets=[registered_model.key],
    job=scoring_job,
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="Requests `category_predictions` for exactly the clients whose @champion changed "
    "since the last tick; reads every event, so a 10-client backfill yields 10 runs.",
)
def rescore_on_new_champion(context: MultiAssetSensorEvaluationContext):
    key = registered_model.key
    latest_change: dict[str, int] = {}
    for record in context.materialization_records_for_key(key, limit=MAX_EVENTS_PER_TICK):
        if champion_changed(record) and record.partition_key:
            latest_change[record.partition_key] = record.storage_id
        context.advance_cursor({key: record})
    for client_id, storage_id in sorted(latest_change.items()):
        yield RunRequest(run_key=f"rescore-{client_id}-{storage_id}", partition_key=client_id)
