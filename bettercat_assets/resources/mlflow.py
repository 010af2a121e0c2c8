"""MLflow tracking as a Pythonic resource: per-client experiments and Dagster-aware run names.

dagster-mlflow's `mlflow_tracking` is not used: it is a legacy `@resource` with one experiment
per resource config, names every run after the job and leaves runs RUNNING when a Dagster run
materializes two assets (see README, "Design notes").
"""

from datetime import date

from dagster import ConfigurableResource

from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.tracking.runs import dagster_run_url


class MlflowResource(ConfigurableResource):
    """Where MLflow lives; the core opens exactly one MLflow run per training and always ends it."""

    tracking_uri: str
    artifact_root: str | None = None

    @property
    def settings(self) -> TrackingSettings:
        return TrackingSettings(tracking_uri=self.tracking_uri, artifact_root=self.artifact_root)

    @staticmethod
    def run_name(client_id: str, day: date, dagster_run_id: str) -> str:
        """`<client>-<date>-<dagster run id prefix>`: unique per Dagster run, readable in the UI."""
        return f"{client_id}-{day.isoformat()}-{dagster_run_id[:8]}"

    @staticmethod
    def run_tags(client_id: str, dagster_run_id: str) -> dict[str, str]:
        """Tags of the MLflow run (and model version) a Dagster run makes, linking back to it."""
        return {
            "client_id": client_id,
            "dagster_run_id": dagster_run_id,
            "dagster_run_url": dagster_run_url(dagster_run_id),
        }
