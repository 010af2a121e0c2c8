"""Client-partitioned assets: training data -> registered model -> category predictions."""

from dagster import AssetKey, RetryPolicy

from bettercat_assets import __version__

GROUP = "categorisation"
OWNERS = ["team:ml-platform"]
#: Bumped with the package: Dagster then marks materializations from older code as stale.
CODE_VERSION = __version__
#: MLflow can be briefly unreachable (TrackingUnavailableError): the step is retried; user
#: mistakes are each client's own error and never retried. A retry redoes the whole range, so
#: a store that fails in the middle of a run registers the clients trained before it again.
TRANSIENT_RETRY = RetryPolicy(max_retries=2, delay=2)

TRAINING_DATA = AssetKey("training_data")
REGISTERED_MODEL = AssetKey("registered_model")
CATEGORY_PREDICTIONS = AssetKey("category_predictions")
#: Pipeline order: a client's stage runs only when its earlier selected stages succeeded.
STAGE_ORDER = (TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS)
