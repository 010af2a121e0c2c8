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

from bettercat_assets.core.config.clients import QualityGate
from bettercat_assets.core.config.rounding import METRIC_DECIMALS, round_float
from bettercat_assets.core.model.topk import top_k_indices

GATE_METRIC = "top5_accuracy"
#: Top-5 accuracy of always predicting the 5 most frequent training categories.
BASELINE_METRIC = "prior_top5_accuracy"


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


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    y_train: np.ndarray | None = None,
) -> dict[str, float]:
    """accuracy, top-5 accuracy, macro-F1 and log-loss on a held-out set; with `y_train`, also
    the class-prior baseline's top-5 accuracy on the same rows (`prior_top5_accuracy`)."""
    y_pred = np.asarray(classes)[proba.argmax(axis=1)]
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        GATE_METRIC: top_k_accuracy(y_true, proba, classes, 5),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=list(classes))),
    }
    if y_train is not None:
        metrics[BASELINE_METRIC] = prior_top_k_accuracy(y_train, y_true, 5)
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
    #: The class-prior baseline on the same test split (None: not computed or not applicable).
    baseline_value: float | None = None


def quality_gate(
    value: float,
    gate: QualityGate,
    champion_version: int | None = None,
    champion_value: float | None = None,
    baseline_value: float | None = None,
) -> GateResult:
    """Pass when the metric meets the floor, beats the class-prior baseline and is not worse
    than the champion (scored on the same test split) beyond the tolerance.

    Why the baseline: the champion is re-scored on the *new* test split, so when the new data
    is broken (labels shuffled or mis-joined) the champion collapses too and "not worse than the
    champion" passes a model that learned nothing. Such a model scores at most about what
    predicting the 5 most frequent categories for every product scores, so it fails here. With
    5 categories or fewer top-5 accuracy is 1.0 by construction and the baseline rule is moot.
    `gate.min_lift_over_prior` is the margin (default 0: strictly better); null turns it off.
    """
    min_lift = gate.min_lift_over_prior
    if min_lift is None or baseline_value is None or np.isnan(baseline_value):
        baseline_value = None
    elif baseline_value >= 1.0:
        baseline_value = None  # no headroom above the baseline: the rule cannot apply
    regressed = champion_value is not None and value < champion_value - gate.max_top5_regression
    problems = _gate_problems(value, gate, champion_version, champion_value, baseline_value)
    if problems:
        reason = "; ".join(problems)
        if champion_value is not None and not regressed:
            reason += (
                f" (champion v{champion_version}: {champion_value:.4f} on the same test split)"
            )
    else:
        reason = _pass_reason(value, gate, champion_version, champion_value, baseline_value)
    return GateResult(
        passed=not problems,
        metric=GATE_METRIC,
        value=value,
        floor=gate.min_top5_accuracy,
        champion_version=champion_version,
        champion_value=champion_value,
        tolerance=gate.max_top5_regression,
        reason=reason,
        baseline_value=baseline_value,
    )


def _gate_problems(
    value: float,
    gate: QualityGate,
    champion_version: int | None,
    champion_value: float | None,
    baseline_value: float | None,
) -> list[str]:
    """Each rule the value breaks, as a sentence."""
    min_lift = gate.min_lift_over_prior or 0.0
    problems = []
    if value < gate.min_top5_accuracy:
        problems.append(
            f"{GATE_METRIC} {value:.4f} is below the floor {gate.min_top5_accuracy:.4f}"
        )
    if baseline_value is not None and value - baseline_value <= min_lift:
        problems.append(
            f"{GATE_METRIC} {value:.4f} does not beat the class-prior baseline "
            f"{baseline_value:.4f}{f' by more than {min_lift:.4f}' if min_lift else ''} "
            "(the 5 most frequent training categories for every product)"
        )
    if champion_value is not None and value < champion_value - gate.max_top5_regression:
        problems.append(
            f"{GATE_METRIC} {value:.4f} is worse than champion v{champion_version}'s "
            f"{champion_value:.4f} on the same test split by more than {gate.max_top5_regression:.4f}"
        )
    return problems


def _pass_reason(
    value: float,
    gate: QualityGate,
    champion_version: int | None,
    champion_value: float | None,
    baseline_value: float | None,
) -> str:
    """Why a passing value passes: every rule it meets."""
    passes = [f"meets the floor {gate.min_top5_accuracy:.4f}"]
    if baseline_value is not None:
        passes.append(f"beats the class-prior baseline {baseline_value:.4f}")
    if champion_value is not None:
        passes.append(
            f"is within {gate.max_top5_regression:.4f} of champion v{champion_version}'s "
            f"{champion_value:.4f}"
        )
    listed = passes[0] if len(passes) == 1 else ", ".join(passes[:-1]) + " and " + passes[-1]
    return f"{GATE_METRIC} {value:.4f} {listed}"


def gate_check_metadata(gate: GateResult) -> dict[str, str | int | float]:
    """The quality-gate check's metadata, rounded; a value that does not exist (no earlier
    champion, no baseline) is left out rather than shown as 0 or NaN."""
    metadata: dict[str, str | int | float] = {
        "metric": gate.metric,
        "value": round_float(gate.value),
        "floor": gate.floor,
        "tolerance": gate.tolerance,
    }
    if gate.baseline_value is not None:
        metadata["baseline_value"] = round_float(gate.baseline_value)
    if gate.champion_version is not None:
        metadata["champion_version"] = int(gate.champion_version)
    if gate.champion_value is not None and not np.isnan(gate.champion_value):
        metadata["champion_value"] = round_float(gate.champion_value)
    return metadata
