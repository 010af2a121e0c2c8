"""MLflow plumbing: one experiment per client, run URLs, and the registry's champion alias."""

from __future__ import annotations

import os
from urllib.parse import quote

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from bettercat_assets.core.config import ClientConfig
from bettercat_assets.core.errors import ModelNotFoundError
from bettercat_assets.core.settings import TrackingSettings

CHAMPION_ALIAS = "champion"
MLFLOW_UI_URL_ENV = "BETTERCAT_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"


def mlflow_client(settings: TrackingSettings) -> MlflowClient:
    """A client bound to this tracking URI, also set as the process default for fluent calls."""
    if settings.tracking_uri.startswith("sqlite:///"):
        db_path = settings.tracking_uri.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def ensure_experiment(client: MlflowClient, settings: TrackingSettings, cfg: ClientConfig) -> str:
    """Get or create the client's experiment, with artifacts under the client's own folder."""
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = (
        f"{settings.artifact_root.rstrip('/')}/{cfg.client_id}" if settings.artifact_root else None
    )
    try:
        return client.create_experiment(
            cfg.experiment_name, artifact_location=location, tags={"client_id": cfg.client_id}
        )
    except MlflowException:  # another run created it first
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id


def ui_base_url(settings: TrackingSettings) -> str:
    """Where a person opens MLflow: the server itself, or `bettercat mlflow-ui` for sqlite."""
    if settings.tracking_uri.startswith(("http://", "https://")):
        return settings.tracking_uri.rstrip("/")
    return os.environ.get(MLFLOW_UI_URL_ENV, DEFAULT_MLFLOW_UI_URL).rstrip("/")


def run_url(settings: TrackingSettings, experiment_id: str, run_id: str) -> str:
    return f"{ui_base_url(settings)}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(settings: TrackingSettings, name: str, version: int | str) -> str:
    return f"{ui_base_url(settings)}/#/models/{quote(name)}/versions/{version}"


def champion_version(client: MlflowClient, model_name: str) -> ModelVersion | None:
    """The version carrying the `champion` alias, or None."""
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except (MlflowException, RestException):
        return None


def serving_version(client: MlflowClient, model_name: str, client_id: str) -> ModelVersion:
    """The version scoring uses: `@champion`, else the latest registered version."""
    champion = champion_version(client, model_name)
    if champion is not None:
        return champion
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        versions = []
    if not versions:
        raise ModelNotFoundError(
            f"client '{client_id}': no registered model '{model_name}' yet; "
            f"run `bettercat train --client-id {client_id}` first"
        )
    return max(versions, key=lambda v: int(v.version))


def get_version(
    client: MlflowClient, model_name: str, version: int, client_id: str
) -> ModelVersion:
    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException:
        raise ModelNotFoundError(
            f"client '{client_id}': model '{model_name}' has no version {version}"
        ) from None


def set_champion(client: MlflowClient, model_name: str, version: int) -> None:
    client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))
