"""Evaluation metrics and diagnostic tables (the quality gate that uses them is `gate.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)

from bettercat_assets.core.config.rounding import METRIC_DECIMALS
from bettercat_assets.core.model.topk import top_k_indices

GATE_METRIC = "top5_accuracy"
#: Top-5 accuracy of always predicting the 5 most frequent training categories.
BASELINE_METRIC = "prior_top5_accuracy"
#: Accuracy of always predicting the most frequent training category.
ACCURACY_BASELINE_METRIC = "prior_accuracy"


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, k: int = 5) -> float:
    """Share of rows whose true label is among the k best-scored classes."""
    best = np.asarray(classes)[top_k_indices(proba, k)]
    return float((best == np.asarray(y_true)[:, None]).any(axis=1).mean())


def prior_top_k_accuracy(y_train: np.ndarray, y_test: np.ndarray, k: int = 5) -> float:
    """Top-k accuracy of the class-prior baseline: every product gets the k most frequent
    training categories (ties broken by label). A model that learned nothing scores about this.
    """
    labels, counts = np.unique(np.asarray(y_train), return_counts=True)
    top = labels[np.argsort(-counts, kind="stable")[:k]]
    y_test = np.asarray(y_test)
    return float(np.isin(y_test, top).mean()) if y_test.size else float("nan")


def score_metric(name: str, y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """A gate metric (`accuracy` or `top5_accuracy`) of `proba` on `y_true`."""
    if name == "accuracy":
        return float((np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y_true)).mean())
    if name == GATE_METRIC:
        return top_k_accuracy(y_true, proba, classes, 5)
    raise ValueError(f"unknown gate metric {name!r}")


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    y_train: np.ndarray | None = None,
) -> dict[str, float]:
    """accuracy, top-5 accuracy, macro-F1 and log-loss on a held-out set; with `y_train`, also
    the class-prior baselines on the same rows: top-5 accuracy of the 5 most frequent training
    categories (`prior_top5_accuracy`) and accuracy of the most frequent (`prior_accuracy`)."""
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        GATE_METRIC: top_k_accuracy(y_true, proba, classes, 5),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=list(classes))),
    }
    if y_train is not None:
        metrics[BASELINE_METRIC] = prior_top_k_accuracy(y_train, y_true, 5)
        metrics[ACCURACY_BASELINE_METRIC] = prior_top_k_accuracy(y_train, y_true, 1)
    return metrics


def per_category_table(
    y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray, proba: np.ndarray | None = None
) -> pd.DataFrame:
    """Precision, recall, F1 and support per category, how often each was predicted and,
    with `proba`, its top-5 recall (share of its test rows with the category among the 5
    best-scored); weakest first (f1, then top-5 recall, ascending; larger support first)."""
    labels = list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    table = pd.DataFrame(
        {
            "category": classes,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "predicted": pd.Series(np.asarray(y_pred))
            .value_counts()
            .reindex(labels, fill_value=0)
            .to_numpy(),
        }
    )
    order = ["f1", "support"]
    if proba is not None:
        best = np.asarray(classes)[top_k_indices(proba, 5)]
        hit = pd.Series((best == np.asarray(y_true)[:, None]).any(axis=1))
        by_class = hit.groupby(np.asarray(y_true)).mean()
        table["top5_recall"] = by_class.reindex(labels).to_numpy()  # NaN: no test rows
        order = ["f1", "top5_recall", "support"]
    table = table.sort_values(order, ascending=[True] * (len(order) - 1) + [False])
    return table.reset_index(drop=True).round(METRIC_DECIMALS)


@dataclass(frozen=True)
class WeakestCategories:
    """The weakest categories that have test rows, and a sentence saying how weak and why."""

    table: pd.DataFrame
    summary: str

    def markdown(self) -> str:
        return f"{self.summary}\n\n{self.table.to_markdown(index=False)}"


def weakest_categories(per_category: pd.DataFrame, top: int = 10) -> WeakestCategories:
    """The `top` weakest rows of `per_category_table` with test rows, and a summary: how many
    categories score f1 = 0, how many of those never reach the top 5 either, and how many have
    no test rows (too rare to judge: their f1 of 0 says nothing)."""
    judged = per_category[per_category["support"] > 0]
    unjudged = len(per_category) - len(judged)
    zero = judged[judged["f1"] == 0]
    parts = [
        f"{len(zero)} of {len(judged)} categories with test rows have f1 = 0 (none of their "
        "test products is predicted right at rank 1)"
    ]
    if len(zero) and "top5_recall" in zero:
        missed = int((zero["top5_recall"] == 0).sum())
        parts.append(f"{missed} of these are not among the 5 best-scored either")
    if unjudged:
        parts.append(f"{unjudged} categories have no test rows and are not judged")
    shown = judged.head(top)
    parts.append(
        f"listed: the {len(shown)} weakest by f1, then top-5 recall; "
        "`support` = test rows, `predicted` = test rows predicted as the category; "
        "all categories in the run's diagnostics/per_category_metrics.csv"
    )
    return WeakestCategories(shown.reset_index(drop=True), "; ".join(parts) + ".")


def confused_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray, top: int = 20
) -> pd.DataFrame:
    """The most frequent (true, predicted) mistakes."""
    matrix = confusion_matrix(y_true, y_pred, labels=list(classes))
    np.fill_diagonal(matrix, 0)
    flat = np.argsort(-matrix, axis=None, kind="stable")[:top]
    rows, cols = np.unravel_index(flat, matrix.shape)
    pairs = pd.DataFrame(
        {
            "true_category": np.asarray(classes)[rows],
            "predicted_category": np.asarray(classes)[cols],
            "count": matrix[rows, cols],
        }
    )
    return pairs[pairs["count"] > 0].reset_index(drop=True)
