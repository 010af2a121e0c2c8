"""Top-k selection over class probabilities: descending score, ties broken by class order."""

from __future__ import annotations

import numpy as np
import pandas as pd


def top_k_indices(proba: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best classes per row, best first.

    Order is by descending probability; equal probabilities go to the lower class index, so
    the result is deterministic. Uses `argpartition` and sorts only the k survivors, falling
    back to a stable full sort on rows where a tie straddles the k-th place.
    """
    n_rows, n_classes = proba.shape
    k = min(k, n_classes)
    if k == n_classes:
        return np.argsort(-proba, axis=1, kind="stable")
    part = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    part.sort(axis=1)  # class order first, so the stable sort below breaks ties by index
    part_scores = np.take_along_axis(proba, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    # A tie straddles the cut when more classes than k reach the k-th score.
    kth = np.take_along_axis(proba, best[:, -1:], axis=1)
    ambiguous = np.flatnonzero((proba >= kth).sum(axis=1) > k)
    if ambiguous.size:
        best[ambiguous] = np.argsort(-proba[ambiguous], axis=1, kind="stable")[:, :k]
    return best


def top_k_frame(
    product_ids: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    k: int,
    model_version: int,
) -> pd.DataFrame:
    """Long table: one row per (product, rank) with label, score, rank and model version."""
    best = top_k_indices(proba, k)
    n_rows, kk = best.shape
    return pd.DataFrame(
        {
            "product_id": np.repeat(np.asarray(product_ids, dtype=object), kk),
            "pred_label": np.asarray(classes, dtype=object)[best.ravel()],
            "pred_score": np.take_along_axis(proba, best, axis=1).ravel().astype(np.float32),
            "rank": np.tile(np.arange(kk, dtype=np.int32), n_rows),
            "model_version": np.full(n_rows * kk, model_version, dtype=np.int32),
        }
    )
