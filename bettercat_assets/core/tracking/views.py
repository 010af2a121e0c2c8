"""The MLflow runs list of a client's experiment, opened with the gate's columns showing.

MLflow's experiment page can load a view shared by link: `?viewStateShareKey=<key>` reads the
experiment tag `mlflow.sharedViewState.<key>` (a JSON of the page's state: columns, sort).
bettercat writes one such view per client experiment, `bettercat-gate`, with the metric that
judges the client's gate, its baseline and the gate's verdict as columns, newest run first, and
links to the runs list through it. Opened without the key, the page shows MLflow's default
columns (Columns -> the gate metric adds it by hand; docs/ui.md).
"""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.tracking.runs import ML_VIEW_QUERY, ui_base_url

SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
GATE_VIEW_KEY = "bettercat-gate"


def gate_view_state(metric: str, baseline: str) -> dict[str, object]:
    """The runs table's state: the gate's columns, newest first. MLflow's default columns
    (Source, Models, Dataset) are left out: the table shows them before the metrics, and in a
    laptop-wide window they push the gate's columns out of sight."""
    columns = [f"metrics.`{metric}`", f"metrics.`{baseline}`", "tags.`gate_status`"]
    return {
        "selectedColumns": columns,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }


def set_gate_view(client: MlflowClient, experiment_id: str, metric: str, baseline: str) -> None:
    """Write (or update) the experiment's `bettercat-gate` view for this gate metric."""
    state = json.dumps(gate_view_state(metric, baseline), separators=(",", ":"))
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG_PREFIX + GATE_VIEW_KEY, state)


def runs_url(settings: TrackingSettings, experiment_id: str) -> str:
    """The client's runs list in the "Model training" view, through the gate view."""
    return (
        f"{ui_base_url(settings)}/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={GATE_VIEW_KEY}&{ML_VIEW_QUERY}"
    )
