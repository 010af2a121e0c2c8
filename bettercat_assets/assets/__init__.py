"""Client-partitioned assets: training data -> registered model -> category predictions."""

from dagster import RetryPolicy

from bettercat_assets import __version__

GROUP = "categorisation"
OWNERS = ["team:ml-platform"]
#: Bumped with the package: Dagster then marks materializations from older code as stale.
CODE_VERSION = __version__
#: MLflow or the filesystem can hiccup; user mistakes raise Failure(allow_retries=False).
TRANSIENT_RETRY = RetryPolicy(max_retries=2, delay=2)
