"""The closed loop's decision: retrain a client whose scoring drifted, once per new training data.

A client opts in with `monitoring: {retrain_on_drift: true}`. It wants retraining when its
latest scoring warned (input drift, prediction drift or an estimated accuracy drop) and its
training file is not the one its latest registered version was trained on (the version's
`data_fingerprint` tag, the file's SHA-256): retraining on the same file would give the same
model, so a drifted client waits for new labelled data, and is retrained once per new file,
whether or not the new version passes its gate.
"""

from __future__ import annotations

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.data.loading import file_fingerprint
from bettercat_assets.core.monitoring.fleet import latest_scoring
from bettercat_assets.core.tracking import runs as tracking


def drifted(layout: DataLayout, client_id: str) -> bool:
    """The client's latest scoring raised a monitoring warning."""
    scoring = latest_scoring(layout, client_id)
    summary = scoring[1] if scoring else None
    if not summary:
        return False
    return bool(
        summary.get("drifted_features")
        or summary.get("prediction_drifted")
        or summary.get("accuracy_dropped")
    )


def latest_trained_on(settings: TrackingSettings, model_name: str) -> str | None:
    """The `data_fingerprint` of the model's newest registered version (None: no version)."""
    client = tracking.mlflow_client(settings)
    versions = client.search_model_versions(
        f"name = '{model_name}'", max_results=1, order_by=["version_number DESC"]
    )
    return versions[0].tags.get("data_fingerprint") if versions else None


def wants_retraining(cfg: ClientConfig, layout: DataLayout, settings: TrackingSettings) -> bool:
    """Opted in, drifted, and new training data since the latest registered version."""
    if not cfg.monitoring.retrain_on_drift or not drifted(layout, cfg.client_id):
        return False
    path = layout.train_file(cfg.client_id)
    if not path.is_file():
        return False
    return file_fingerprint(path) != latest_trained_on(settings, cfg.model_name)
