"""Stage 3 of a training, evaluate and judge: the split model's metrics on the test split, the
champion's on the same rows (or the ones it was not fit on), and the gate's verdict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mlflow import MlflowClient

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.rounding import round_metrics
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.training.champion import ChampionScore, champion_score
from bettercat_assets.core.training.evaluation import evaluate, score_metric
from bettercat_assets.core.training.fitting import FittedModel
from bettercat_assets.core.training.gate import (
    GateMetric,
    GateResult,
    gate_metric,
    quality_gate,
)
from bettercat_assets.core.training.refit import fit_rows
from bettercat_assets.core.training.split import Split


@dataclass(frozen=True)
class Assessment:
    """Raw metrics for the gate, rounded ones for display, the champion's score, counts."""

    raw: dict[str, float]
    metrics: dict[str, float]
    proba: np.ndarray
    champion: ChampionScore | None
    #: the split model's gate metric on the rows the champion was scored on (None: all rows)
    challenger_value: float | None
    counts: dict[str, int]
    gate_metric: GateMetric

    @property
    def champion_value(self) -> float | None:
        return None if self.champion is None else self.champion.value


def _sklearn_megabytes(estimator: object) -> float:
    trees = getattr(estimator, "estimators_", None)
    if trees is None:
        return float(estimator.coef_.nbytes) / 2**20
    return sum(t.tree_.value.nbytes + t.tree_.__getstate__()["nodes"].nbytes for t in trees) / 2**20


def assess(
    client: ClientConfig,
    settings: TrackingSettings,
    mlflow_client: MlflowClient,
    champion: int | None,
    split: Split,
    fitted: FittedModel,
) -> Assessment:
    """The split model's metrics on the test split, and the champion's gate metric."""
    proba = fitted.predict_proba(split.x_test)
    raw = {
        **evaluate(split.y_test, proba, fitted.classes_, y_train=split.y_train),
        "n_model_features": float(fitted.estimator.n_features_in_),
        "fit_seconds": fitted.fit_seconds,
        "compact_model_mb": fitted.compact.nbytes / 2**20,
        "sklearn_model_mb": _sklearn_megabytes(fitted.estimator),
    }
    metric = gate_metric(len(fitted.classes_))
    test = (split.x_test, split.y_test, split.test_ids)
    score = champion_score(settings, mlflow_client, client.model_name, champion, test, metric.name)
    challenger = None
    if score is not None:
        raw[f"champion_{metric.name}"] = score.value
        if score.keep is not None:
            keep = score.keep
            challenger = score_metric(metric.name, split.y_test[keep], proba[keep], fitted.classes_)
    counts = {
        "train_rows": len(split.y_train),
        "test_rows": len(split.y_test),
        "fit_rows": fit_rows(client, split.table, len(split.y_train)),
        "n_classes": len(fitted.classes_),
    }
    # what MLflow and Dagster show; the gate judges `raw`
    return Assessment(raw, round_metrics(raw), proba, score, challenger, counts, metric)


def judge(client: ClientConfig, assessment: Assessment, champion: int | None) -> GateResult:
    """The quality gate's verdict on the split model."""
    metric, score = assessment.gate_metric, assessment.champion
    return quality_gate(
        assessment.raw[metric.name],
        client.quality_gate,
        champion,
        assessment.champion_value,
        baseline_value=assessment.raw.get(metric.baseline),
        metric=metric,
        test_rows=assessment.counts["test_rows"],
        **({"champion_basis": score.describe()} if score is not None else {}),
        challenger_value=assessment.challenger_value,
    )
