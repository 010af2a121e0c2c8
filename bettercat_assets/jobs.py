"""Jobs over the client partitions."""

from dagster import AssetSelection, define_asset_job

from bettercat_assets.assets.category_predictions import category_predictions
from bettercat_assets.assets.registered_model import registered_model
from bettercat_assets.assets.training_data import training_data
from bettercat_assets.partitions import client_partitions

training_job = define_asset_job(
    "train_clients",
    selection=AssetSelection.assets(training_data, registered_model),
    partitions_def=client_partitions,
    description="Validate a client's training data, then train, register and gate its model.",
)

scoring_job = define_asset_job(
    "score_clients",
    selection=AssetSelection.assets(category_predictions),
    partitions_def=client_partitions,
    description="Score a client's products with its @champion.",
)

client_pipeline_job = define_asset_job(
    "client_pipeline",
    selection=AssetSelection.assets(training_data, registered_model, category_predictions),
    partitions_def=client_partitions,
    description="Everything for one client: data, model, predictions (the demo runs this).",
)
