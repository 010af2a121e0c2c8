"""Train, evaluate, track, register and gate one client's model (RandomForest or linear)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from bettercat_assets import __version__  # noqa: E402
from bettercat_assets.core.config.clients import ClientConfig  # noqa: E402
from bettercat_assets.core.config.paths import DataLayout  # noqa: E402
from bettercat_assets.core.config.rounding import round_metrics  # noqa: E402
from bettercat_assets.core.config.settings import TrackingSettings  # noqa: E402
from bettercat_assets.core.data.loading import TrainingTable, load_training_table  # noqa: E402
from bettercat_assets.core.model.store import log_forest, record_registration  # noqa: E402
from bettercat_assets.core.monitoring.reference import reference_for_model  # noqa: E402
from bettercat_assets.core.tracking import runs as tracking  # noqa: E402
from bettercat_assets.core.tracking.lineage import code_version, git_sha  # noqa: E402
from bettercat_assets.core.tracking.views import runs_url  # noqa: E402
from bettercat_assets.core.training.descriptions import describe_training  # noqa: E402
from bettercat_assets.core.training.diagnostics import log_diagnostics  # noqa: E402
from bettercat_assets.core.training.evaluation import WeakestCategories, evaluate  # noqa: E402
from bettercat_assets.core.training.fitting import FittedModel, fit_client_model  # noqa: E402
from bettercat_assets.core.training.gate import (  # noqa: E402
    GateMetric,
    GateResult,
    champion_score,
    gate_metric,
    quality_gate,
)
from bettercat_assets.core.training.split import split_train_test  # noqa: E402

Progress = Callable[[str], None]
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingResult:
    """What one training produced, for the CLI summary and Dagster metadata."""

    client_id: str
    model_name: str
    version: int
    run_id: str
    experiment_id: str
    run_url: str
    model_url: str
    metrics: dict[str, float]
    gate: GateResult
    champion_version: int | None
    previous_champion_version: int | None
    data_path: str
    data_fingerprint: str
    classes: int
    weakest_categories: pd.DataFrame = field(repr=False)
    #: How many categories are weak and why (f1 = 0, not in the top 5, no test rows).
    weakest_summary: str = ""
    #: train_rows, test_rows, n_classes: integers (MLflow params, Dagster int metadata).
    counts: dict[str, int] = field(default_factory=dict)
    #: The client's runs list in MLflow, with the gate's columns.
    runs_url: str = ""

    @property
    def champion_changed(self) -> bool:
        return self.champion_version != self.previous_champion_version


def _end_run(settings: TrackingSettings, run_id: str, status: str) -> None:
    """End the training's run with `status`; on a failure path never mask the original error.

    `mlflow.end_run` pops the run off the active stack before it calls the store, so the
    process never keeps a stale active run, even when the store is unreachable.
    """
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        return
    try:
        with tracking.store_lock(settings):
            mlflow.end_run(status)
    except Exception:
        if status == "FINISHED":
            raise
        _log.warning("could not mark MLflow run %s %s", run_id, status, exc_info=True)


@dataclass(frozen=True)
class _Run:
    """The client's MLflow run that every stage after the split logs to."""

    client: ClientConfig
    settings: TrackingSettings
    mlflow: MlflowClient
    experiment_id: str
    run_id: str
    tags: dict[str, str]
    extra_tags: dict[str, str]


@dataclass(frozen=True)
class _Split:
    """Stage 1, load and split: the validated table and its stratified split."""

    path: Path
    table: TrainingTable
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


_Fitted = FittedModel  # stage 2, fit: the estimator, its featurizer and compact form


@dataclass(frozen=True)
class _Evaluation:
    """Stage 3, evaluate: raw metrics for the gate, rounded ones for display, counts."""

    raw: dict[str, float]
    metrics: dict[str, float]
    proba: np.ndarray
    champion_value: float | None
    counts: dict[str, int]
    gate_metric: GateMetric


@dataclass(frozen=True)
class _Registered:
    """Stage 5, register and gate: the new version and the champion after the gate."""

    version: int
    gate: GateResult
    champion: int | None


def train_model(
    client: ClientConfig,
    training_date: date,
    *,
    layout: DataLayout,
    settings: TrackingSettings,
    run_name: str | None = None,
    extra_tags: dict[str, str] | None = None,
    progress: Progress = lambda _msg: None,
) -> TrainingResult:
    """Train one client's model, log it to MLflow, register a version and apply the gate.

    Stages: load and split, fit, evaluate, log, register and gate. The version becomes
    `@champion` only when the quality gate passes; otherwise it stays registered with tags
    saying why. Raises DataError for bad input before MLflow is touched.
    """
    split = _load_and_split(client, layout, progress)
    run = _start_run(client, settings, training_date, split, run_name, extra_tags or {}, progress)
    # From here the run is ended on every path: FINISHED, FAILED on an error, KILLED when
    # interrupted (KeyboardInterrupt, SystemExit). Only a process killed outright leaves it
    # RUNNING, and the next training of this client reaps it (see tracking.reap_orphaned_runs).
    status = "FAILED"
    try:
        previous_champion = _log_params(run)
        fitted = _fit(client, split, progress)
        evaluation = _evaluate(run, split, fitted, previous_champion)
        weakest = _log_evaluation(run, split, fitted, evaluation)
        progress(f"{client.client_id}: logging and registering {client.model_name}")
        registered = _register_and_gate(run, split, fitted, evaluation, previous_champion)
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        _end_run(settings, run.run_id, status)
    return TrainingResult(
        client_id=client.client_id,
        model_name=client.model_name,
        version=registered.version,
        run_id=run.run_id,
        experiment_id=run.experiment_id,
        run_url=tracking.run_url(settings, run.experiment_id, run.run_id),
        model_url=tracking.model_version_url(settings, client.model_name, registered.version),
        metrics=evaluation.metrics,
        gate=registered.gate,
        champion_version=registered.champion,
        previous_champion_version=previous_champion,
        data_path=str(split.path),
        data_fingerprint=split.table.fingerprint,
        classes=len(fitted.classes_),
        weakest_categories=weakest.table,
        weakest_summary=weakest.summary,
        counts=evaluation.counts,
        runs_url=runs_url(settings, run.experiment_id),
    )


def _load_and_split(client: ClientConfig, layout: DataLayout, progress: Progress) -> _Split:
    path = layout.train_file(client.client_id)
    progress(f"{client.client_id}: loading {path}")
    table = load_training_table(client, path)
    seed = int(client.model_params.get("random_state") or 0)
    return _Split(path, table, *split_train_test(table, client.test_size, seed))


def _run_tags(
    client: ClientConfig, training_date: date, split: _Split, extra_tags: dict[str, str] | None
) -> dict[str, str]:
    return {
        "client_id": client.client_id,
        "training_date": training_date.isoformat(),
        "data_path": str(split.path),
        "data_fingerprint": split.table.fingerprint,
        "code_version": code_version(),
        "bettercat_version": __version__,
        **({"git_sha": git_sha()} if git_sha() else {}),
        **(extra_tags or {}),
        **tracking.process_tags(),
    }


def _start_run(
    client: ClientConfig,
    settings: TrackingSettings,
    training_date: date,
    split: _Split,
    run_name: str | None,
    extra_tags: dict[str, str],
    progress: Progress,
) -> _Run:
    client_mlflow = tracking.mlflow_client(settings)
    tracking.check_available(client_mlflow, settings)  # a dead server fails here, runless
    tags = _run_tags(client, training_date, split, extra_tags)
    name = run_name or f"{client.client_id}-{training_date.isoformat()}"
    with tracking.store_lock(settings):
        experiment_id = tracking.ensure_experiment(client_mlflow, settings, client)
        for orphan in tracking.reap_orphaned_runs(client_mlflow, experiment_id):
            progress(f"{client.client_id}: marked run {orphan} KILLED (its process is gone)")
        run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags)
    return _Run(client, settings, client_mlflow, experiment_id, run.info.run_id, tags, extra_tags)


def _log_params(run: _Run) -> int | None:
    """Log the training's parameters; return the current champion's version."""
    client = run.client
    with tracking.store_lock(run.settings):
        champion_mv = tracking.champion_version(run.mlflow, client.model_name)
        mlflow.log_params(
            {
                **_model_params(client),
                "features": ",".join(client.features),
                "test_size": client.test_size,
                "top_k": client.top_k,
            }
        )
    return int(champion_mv.version) if champion_mv else None


def _model_params(client: ClientConfig) -> dict[str, object]:
    """The fitted model's parameters as run params: `rf_*` or `linear_*`, and the text settings."""
    if client.model.kind == "linear":
        params = {f"linear_{k}": v for k, v in client.model.linear_params.items()}
    else:
        params = {f"rf_{k}": v for k, v in client.model_params.items()}
    if client.has_text_or_categorical:
        params |= {"feature_kinds": ",".join(f"{s.name}:{s.kind}" for s in client.feature_specs)}
        params |= {f"text_{k}": v for k, v in client.text.model_dump().items()}
    return {"model_kind": client.model.kind, **params}


def _fit(client: ClientConfig, split: _Split, progress: Progress) -> _Fitted:
    what = "logistic regression" if client.model.kind == "linear" else "RandomForest"
    progress(f"{client.client_id}: fitting {what} on {len(split.y_train)} rows")
    return fit_client_model(client, split.x_train, split.y_train)


def _sklearn_megabytes(estimator: object) -> float:
    trees = getattr(estimator, "estimators_", None)
    if trees is None:
        return float(estimator.coef_.nbytes) / 2**20
    return sum(t.tree_.value.nbytes + t.tree_.__getstate__()["nodes"].nbytes for t in trees) / 2**20


def _evaluate(run: _Run, split: _Split, fitted: _Fitted, champion: int | None) -> _Evaluation:
    proba = fitted.predict_proba(split.x_test)
    raw = {
        **evaluate(split.y_test, proba, fitted.classes_, y_train=split.y_train),
        "n_model_features": float(fitted.estimator.n_features_in_),
        "fit_seconds": fitted.fit_seconds,
        "compact_model_mb": fitted.compact.nbytes / 2**20,
        "sklearn_model_mb": _sklearn_megabytes(fitted.estimator),
    }
    metric = gate_metric(len(fitted.classes_))
    champion_value = champion_score(
        run.settings, run.client.model_name, champion, split.x_test, split.y_test, metric.name
    )
    if champion_value is not None:
        raw[f"champion_{metric.name}"] = champion_value
    counts = {
        "train_rows": len(split.y_train),
        "test_rows": len(split.y_test),
        "n_classes": len(fitted.classes_),
    }
    # what MLflow and Dagster show; the gate judges `raw`
    return _Evaluation(raw, round_metrics(raw), proba, champion_value, counts, metric)


def _log_evaluation(
    run: _Run, split: _Split, fitted: _Fitted, evaluation: _Evaluation
) -> WeakestCategories:
    """Stage 4, log: metrics and diagnostics on the run."""
    with tracking.store_lock(run.settings):
        mlflow.log_metrics(evaluation.metrics)
        mlflow.log_params(evaluation.counts)  # counts: MLflow shows params as written, 3200
        features = list(run.client.features)
        return log_diagnostics(
            fitted.classes_,
            fitted.input_importances(len(features)),
            features,
            split.y_test,
            evaluation.proba,
        )


def _judge(run: _Run, evaluation: _Evaluation, champion: int | None) -> GateResult:
    metric = evaluation.gate_metric
    return quality_gate(
        evaluation.raw[metric.name],
        run.client.quality_gate,
        champion,
        evaluation.champion_value,
        baseline_value=evaluation.raw.get(metric.baseline),
        metric=metric,
        test_rows=evaluation.counts["test_rows"],
    )


def _register_and_gate(
    run: _Run, split: _Split, fitted: _Fitted, evaluation: _Evaluation, champion: int | None
) -> _Registered:
    client = run.client
    gate = _judge(run, evaluation, champion)
    version_tags = {
        "run_id": run.run_id,
        "data_fingerprint": split.table.fingerprint,
        "code_version": run.tags["code_version"],
        "gate_status": gate.verdict,
        "gate_metric": gate.metric,
        "gate_reason": gate.reason,
        **run.extra_tags,
    }
    with tracking.store_lock(run.settings):
        info = log_forest(
            fitted.estimator,
            fitted.compact,
            split.x_test.head(5),
            id_column=client.id_column,
            top_k=client.top_k,
            profile=reference_for_model(
                fitted.compact,
                split.table.features,
                split.x_test,
                split.y_test,
                client.monitoring.bins,
            ),
        )
        mv = mlflow.register_model(info.model_uri, client.model_name, tags=version_tags)
        version = int(mv.version)
        record_registration(info, client.model_name, version)
        mlflow.set_tags({"registered_model": client.model_name, "registered_version": version})
        if gate.passed:
            tracking.set_champion(run.mlflow, client.model_name, version)
            champion = version
        describe_training(
            run.mlflow,
            run.settings,
            run.experiment_id,
            run.tags,
            run.client,
            version,
            gate,
            champion,
        )
    return _Registered(version, gate, champion)
