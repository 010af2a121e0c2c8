"""Dagster resources: clients and data layout, MLflow tracking, Spark."""

from bettercat_assets.resources.clients import ClientsResource
from bettercat_assets.resources.mlflow import MlflowResource
from bettercat_assets.resources.spark import SparkResource

__all__ = ["ClientsResource", "MlflowResource", "SparkResource"]
