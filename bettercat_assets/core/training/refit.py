"""The model a training registers: the split model, or the same model refit on every row.

The split model (fit on the training split) is evaluated on the test split, and its metrics,
diagnostics, gate and monitoring profile are the training's. With `refit_on_all_rows` (the
default) the model that is then logged and registered is fit again, with the same settings, on
every row of the file (training and test split): a fifth more data, and the held-out metrics
of the split model are a slightly pessimistic estimate of it. The version is tagged
`fitted_on: all_rows` (or `train_split`), and the run keeps the products it was fit on
(`core/training/fitted_ids.py`) so a later gate does not score it on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.data.loading import TrainingTable
from bettercat_assets.core.training.fitted_ids import id_hashes, log_fitted_ids
from bettercat_assets.core.training.fitting import FittedModel, fit_client_model

ALL_ROWS = "all_rows"
TRAIN_SPLIT = "train_split"
#: The model version tag saying which rows the registered model was fit on.
FITTED_ON_TAG = "fitted_on"


@dataclass(frozen=True)
class FinalModel:
    """The model to register, and what it was fit on."""

    fitted: FittedModel
    #: ALL_ROWS or TRAIN_SPLIT
    fitted_on: str
    fit_rows: int
    #: sorted hashes of the product ids it was fit on
    id_hashes: np.ndarray
    #: seconds the refit took (None: no refit)
    refit_seconds: float | None = None


def fit_rows(client: ClientConfig, table: TrainingTable, train_rows: int) -> int:
    """How many rows the registered model is fit on."""
    return table.rows if client.refit_on_all_rows else train_rows


def final_model(
    client: ClientConfig,
    table: TrainingTable,
    split_model: FittedModel,
    train_ids: pd.Series,
    progress: Callable[[str], None],
) -> FinalModel:
    """The split model itself, or (`refit_on_all_rows`) the client's model fit on every row."""
    if not client.refit_on_all_rows:
        return FinalModel(split_model, TRAIN_SPLIT, len(train_ids), id_hashes(train_ids))
    progress(f"{client.client_id}: refitting on all {table.rows} rows (train + test split)")
    refit = fit_client_model(client, table.features, table.labels.to_numpy())
    hashes = id_hashes(table.product_ids)
    return FinalModel(refit, ALL_ROWS, table.rows, hashes, refit.fit_seconds)


def log_final_model(final: FinalModel) -> None:
    """On the active run: the fitted ids artifact, `refit_seconds` and the refit's compact size
    (`compact_model_mb` is the split model's), and the `fitted_on` tag."""
    log_fitted_ids(final.id_hashes)
    if final.refit_seconds is not None:
        mlflow.log_metric("refit_seconds", round(final.refit_seconds, 2))
        mlflow.log_metric("refit_compact_model_mb", round(final.fitted.compact.nbytes / 2**20, 2))
    mlflow.set_tag(FITTED_ON_TAG, final.fitted_on)
