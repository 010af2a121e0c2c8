"""Read-side helpers: latest prediction output, champion summary and lineage walk-back."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.scoring.spark_pass import LINEAGE_FILE
from bettercat_assets.core.tracking import runs as tracking

_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_CLIENT_DIR = re.compile(r"^client_id=([A-Za-z0-9_-]{1,64})$")


def prediction_dates(layout: DataLayout, client_id: str) -> list[date]:
    root = layout.predictions_root(client_id)
    found = [_DATE_DIR.match(p.name) for p in root.iterdir()] if root.is_dir() else []
    return sorted(date.fromisoformat(m.group(1)) for m in found if m)


def read_predictions(
    layout: DataLayout, client_id: str, day: date | None = None
) -> tuple[date, pd.DataFrame]:
    """One date's predictions (default: the latest) as pandas, via pyarrow."""
    dates = prediction_dates(layout, client_id)
    if not dates:
        raise BettercatError(
            f"client '{client_id}': no predictions under {layout.predictions_root(client_id)}; "
            f"run `bettercat predict --client-id {client_id}` first"
        )
    day = day or dates[-1]
    if day not in dates:
        raise BettercatError(
            f"client '{client_id}': no predictions for {day} (have {dates[-1]} and earlier)"
        )
    frame = (
        ds.dataset(layout.predictions_dir(client_id, day), format="parquet").to_table().to_pandas()
    )
    return day, frame


def wide_preview(predictions: pd.DataFrame, products: int = 5) -> pd.DataFrame:
    """A few products with their ranked categories and scores side by side."""
    first = predictions["product_id"].drop_duplicates().sort_values().head(products)
    rows = predictions[predictions["product_id"].isin(first)].sort_values(["product_id", "rank"])
    rows = rows.assign(
        cell=rows["pred_label"] + " (" + rows["pred_score"].map("{:.3f}".format) + ")"
    )
    wide = rows.pivot(index="product_id", columns="rank", values="cell")
    wide.columns = [f"#{int(c) + 1}" for c in wide.columns]
    return wide


@dataclass(frozen=True)
class Lineage:
    """Where a prediction file came from: model version -> MLflow run -> data and Dagster runs."""

    client_id: str
    model_name: str
    model_version: int
    run_id: str
    run_url: str
    model_version_url: str
    data_path: str | None
    data_fingerprint: str | None
    #: The Dagster run that trained the model (None when trained with `bettercat train`).
    dagster_run_id: str | None
    #: Its page in the Dagster UI.
    dagster_run_url: str | None
    code_version: str | None
    git_sha: str | None
    gate_status: str | None
    #: From the output's `_lineage.json`: when and by which Dagster run it was scored.
    scored_at: str | None
    scoring_dagster_run_id: str | None
    scoring_dagster_run_url: str | None


def _dagster_run_url(run_id: str | None, recorded: str | None = None) -> str | None:
    """The Dagster UI page of `run_id`: at $BETTERCAT_DAGSTER_UI_URL when set, else the URL the
    run recorded (the deployment's address then), else at `dagster dev`'s default address."""
    if not run_id:
        return None
    if recorded and not os.environ.get(tracking.DAGSTER_UI_URL_ENV):
        return recorded
    return tracking.dagster_run_url(run_id)


def lineage_of(parquet_path: Path, settings: TrackingSettings) -> Lineage:
    """Walk back from a prediction parquet file (or its date directory) to its model version,
    MLflow run, training-data fingerprint and the Dagster runs that trained and scored it.

    Only the file is needed: the model version is a column, the client is in the path
    (`client_id=<id>`) or in the `_lineage.json` beside it; MLflow holds the rest.
    """
    path = parquet_path.resolve()
    client_id = next((m.group(1) for p in path.parts if (m := _CLIENT_DIR.match(p))), None)
    try:
        table = ds.dataset(path, format="parquet").to_table(columns=["model_version"])
    except (OSError, ValueError) as exc:  # pyarrow: not parquet, or no model_version column
        raise BettercatError(f"{path}: not a bettercat prediction file: {exc}") from None
    versions = sorted(set(table.column("model_version").to_pylist()))
    if len(versions) != 1:
        raise BettercatError(f"{path}: expected one model_version, found {versions}")
    version = int(versions[0])
    sidecar = (path if path.is_dir() else path.parent) / LINEAGE_FILE
    recorded = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    client_id = client_id or recorded.get("client_id")
    if not client_id:
        raise BettercatError(f"{path}: cannot tell the client (no client_id=<id> in the path)")
    model_name = recorded.get("model_name") or f"{client_id}_model"
    client = tracking.mlflow_client(settings)
    mv = tracking.get_version(client, model_name, version, client_id)
    run_id = mv.run_id or mv.tags.get("run_id")
    if not run_id:
        raise BettercatError(f"model '{model_name}' v{version} names no MLflow run")
    run = client.get_run(run_id)
    tags = run.data.tags
    return Lineage(
        client_id=client_id,
        model_name=model_name,
        model_version=version,
        run_id=run_id,
        run_url=tracking.run_url(settings, run.info.experiment_id, run_id),
        model_version_url=tracking.model_version_url(settings, model_name, version),
        data_path=tags.get("data_path"),
        data_fingerprint=tags.get("data_fingerprint"),
        dagster_run_id=tags.get("dagster_run_id"),
        dagster_run_url=_dagster_run_url(tags.get("dagster_run_id"), tags.get("dagster_run_url")),
        code_version=tags.get("code_version"),
        git_sha=tags.get("git_sha"),
        gate_status=mv.tags.get("gate_status"),
        scored_at=recorded.get("scored_at"),
        scoring_dagster_run_id=recorded.get("dagster_run_id"),
        scoring_dagster_run_url=_dagster_run_url(recorded.get("dagster_run_id")),
    )
