"""Evaluation metrics, diagnostic tables and the champion/challenger quality gate."""

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

from bettercat_assets.core.config import QualityGate
from bettercat_assets.core.topk import top_k_indices

GATE_METRIC = "top5_accuracy"


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, k: int = 5) -> float:
    """Share of rows whose true label is among the k best-scored classes."""
    best = np.asarray(classes)[top_k_indices(proba, k)]
    return float((best == np.asarray(y_true)[:, None]).any(axis=1).mean())


def evaluate(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """accuracy, top-5 accuracy, macro-F1 and log-loss on a held-out set."""
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        GATE_METRIC: top_k_accuracy(y_true, proba, classes, 5),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=list(classes))),
    }


def per_category_table(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1 and support per category, weakest first."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(classes), zero_division=0
    )
    table = pd.DataFrame(
        {
            "category": classes,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    )
    return table.sort_values(["f1", "support"], ascending=[True, False]).reset_index(drop=True)


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


@dataclass(frozen=True)
class GateResult:
    """Outcome of the quality gate for a newly trained model."""

    passed: bool
    metric: str
    value: float
    floor: float
    champion_version: int | None
    champion_value: float | None
    tolerance: float
    reason: str


def quality_gate(
    value: float,
    gate: QualityGate,
    champion_version: int | None = None,
    champion_value: float | None = None,
) -> GateResult:
    """Pass when the metric meets the floor and is not worse than the champion beyond tolerance."""
    problems = []
    if value < gate.min_top5_accuracy:
        problems.append(
            f"{GATE_METRIC} {value:.4f} is below the floor {gate.min_top5_accuracy:.4f}"
        )
    if champion_value is not None and value < champion_value - gate.max_top5_regression:
        problems.append(
            f"{GATE_METRIC} {value:.4f} is worse than champion v{champion_version}'s "
            f"{champion_value:.4f} on the same test split by more than {gate.max_top5_regression:.4f}"
        )
    if problems:
        reason = "; ".join(problems)
    elif champion_value is None:
        reason = f"{GATE_METRIC} {value:.4f} meets the floor {gate.min_top5_accuracy:.4f}"
    else:
        reason = (
            f"{GATE_METRIC} {value:.4f} meets the floor {gate.min_top5_accuracy:.4f} and is within "
            f"{gate.max_top5_regression:.4f} of champion v{champion_version}'s {champion_value:.4f}"
        )
    return GateResult(
        passed=not problems,
        metric=GATE_METRIC,
        value=value,
        floor=gate.min_top5_accuracy,
        champion_version=champion_version,
        champion_value=champion_value,
        tolerance=gate.max_top5_regression,
        reason=reason,
    )
