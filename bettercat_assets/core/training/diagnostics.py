"""Run diagnostics: feature importance plot, per-category table and confused pairs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402

from bettercat_assets.core.training.evaluation import (  # noqa: E402
    WeakestCategories,
    confused_pairs,
    per_category_table,
    weakest_categories,
)


def log_diagnostics(
    classes: np.ndarray,
    importances: np.ndarray | None,
    features: list[str],
    y_test: np.ndarray,
    proba: np.ndarray,
) -> WeakestCategories:
    """Feature-importance plot (forests: per input feature), per-category table and confused
    pairs as run artifacts."""
    y_pred = classes[proba.argmax(axis=1)]
    per_category = per_category_table(y_test, y_pred, classes, proba)
    pairs = confused_pairs(y_test, y_pred, classes)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        per_category.to_csv(out / "per_category_metrics.csv", index=False)
        pairs.to_csv(out / "confused_pairs.csv", index=False)
        if importances is not None:
            _plot_importances(importances, features, out / "feature_importance.png")
        mlflow.log_artifacts(tmp, artifact_path="diagnostics")
    return weakest_categories(per_category)


def _plot_importances(importances: np.ndarray, features: list[str], path: Path) -> None:
    order = np.argsort(importances)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(features) + 1.5))
    ax.barh(np.asarray(features)[order], importances[order], color="#4f46e5")
    ax.set_xlabel("mean decrease in impurity")
    ax.set_title("Feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
