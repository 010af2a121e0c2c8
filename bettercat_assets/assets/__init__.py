"""Client-partitioned assets: training data -> registered model -> category predictions."""

from dagster import AssetKey

from bettercat_assets import __version__

GROUP = "categorisation"
OWNERS = ["team:ml-platform"]
#: Bumped with the package: Dagster then marks materializations from older code as stale.
CODE_VERSION = __version__

TRAINING_DATA = AssetKey("training_data")
REGISTERED_MODEL = AssetKey("registered_model")
CATEGORY_PREDICTIONS = AssetKey("category_predictions")
#: Pipeline order: a client's stage runs only when its earlier selected stages succeeded.
STAGE_ORDER = (TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS)
