"""bettercat: multi-tenant product categorisation on Dagster, MLflow and Spark.

The ML core lives in :mod:`bettercat_assets.core` and never imports Dagster; the Dagster
definitions live in :mod:`bettercat_assets.definitions`.
"""

__version__ = "0.1.0"
