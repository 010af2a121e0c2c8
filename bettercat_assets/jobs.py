"""Asset jobs over the client partitions (each run may cover a range of clients)."""

from dagster import AssetSelection, PartitionsDefinition, define_asset_job

from bettercat_assets.assets import CATEGORY_PREDICTIONS, REGISTERED_MODEL, TRAINING_DATA

TRAINING_JOB = "train_clients"
SCORING_JOB = "score_clients"
PIPELINE_JOB = "client_pipeline"


def build_jobs(partitions: PartitionsDefinition) -> list:
    return [
        define_asset_job(
            TRAINING_JOB,
            selection=AssetSelection.assets(TRAINING_DATA, REGISTERED_MODEL),
            partitions_def=partitions,
            description="Validate the clients' training data, then train, register and gate "
            "their models.",
        ),
        define_asset_job(
            SCORING_JOB,
            selection=AssetSelection.assets(CATEGORY_PREDICTIONS),
            partitions_def=partitions,
            description="Score the clients' products with their @champion.",
        ),
        define_asset_job(
            PIPELINE_JOB,
            selection=AssetSelection.assets(TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS),
            partitions_def=partitions,
            description="Everything for the clients: data, model, predictions (the demo runs this).",
        ),
    ]
