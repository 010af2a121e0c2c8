"""Train, evaluate, track, register and gate one client's RandomForest."""

from __future__ import annotations

import logging
import time
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
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from bettercat_assets import __version__  # noqa: E402
from bettercat_assets.core.config.clients import ClientConfig  # noqa: E402
from bettercat_assets.core.config.paths import DataLayout  # noqa: E402
from bettercat_assets.core.config.rounding import round_metrics  # noqa: E402
from bettercat_assets.core.config.settings import TrackingSettings  # noqa: E402
from bettercat_assets.core.data.loading import TrainingTable, load_training_table  # noqa: E402
from bettercat_assets.core.model.compact_forest import CompactForest  # noqa: E402
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn  # noqa: E402
from bettercat_assets.core.model.store import (  # noqa: E402
    load_compact,
    log_forest,
    record_registration,
)
from bettercat_assets.core.tracking import runs as tracking  # noqa: E402
from bettercat_assets.core.tracking.lineage import code_version, git_sha  # noqa: E402
from bettercat_assets.core.training.diagnostics import log_diagnostics  # noqa: E402
from bettercat_assets.core.training.evaluation import (  # noqa: E402
    BASELINE_METRIC,
    GATE_METRIC,
    GateResult,
    WeakestCategories,
    evaluate,
    quality_gate,
    top_k_accuracy,
)

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

    @property
    def champion_changed(self) -> bool:
        return self.champion_version != self.previous_champion_version


def split_train_test(
    table: TrainingTable, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Stratified split; classes with a single row stay in training so test labels are known."""
    labels = table.labels.to_numpy()
    counts = table.labels.value_counts()
    singles = table.labels.isin(counts.index[counts < 2]).to_numpy()
    idx = np.flatnonzero(~singles)
    n_classes = table.labels[~singles].nunique()
    n_test = int(np.ceil(test_size * idx.size))
    stratify = labels[idx] if n_classes <= n_test <= idx.size - n_classes else None
    train_idx, test_idx = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=stratify
    )
    train_idx = np.concatenate([train_idx, np.flatnonzero(singles)])
    x = table.features
    return x.iloc[train_idx], x.iloc[test_idx], labels[train_idx], labels[test_idx]


def _champion_score(
    settings: TrackingSettings,
    cfg: ClientConfig,
    champion: int | None,
    x_test: pd.DataFrame,
    y_test: np.ndarray,
) -> float | None:
    """The champion's top-5 accuracy on the new test split, when it uses the same features."""
    if champion is None:
        return None
    forest = load_compact(settings, cfg.model_name, champion)
    if list(forest.feature_names) != list(x_test.columns):
        return None
    proba = forest.predict_proba(x_test.to_numpy(dtype=np.float32))
    return top_k_accuracy(y_test, proba, forest.classes_, 5)


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


@dataclass(frozen=True)
class _Fitted:
    """Stage 2, fit: the forest, its compact form and the fit time."""

    forest: RandomForestClassifier
    compact: CompactForest
    fit_seconds: float


@dataclass(frozen=True)
class _Evaluation:
    """Stage 3, evaluate: raw metrics for the gate, rounded ones for display."""

    raw: dict[str, float]
    metrics: dict[str, float]
    proba: np.ndarray
    champion_value: float | None


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
        classes=len(fitted.forest.classes_),
        weakest_categories=weakest.table,
        weakest_summary=weakest.summary,
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
                **{f"rf_{k}": v for k, v in client.model_params.items()},
                "features": ",".join(client.features),
                "test_size": client.test_size,
                "top_k": client.top_k,
            }
        )
    return int(champion_mv.version) if champion_mv else None


def _fit(client: ClientConfig, split: _Split, progress: Progress) -> _Fitted:
    progress(f"{client.client_id}: fitting RandomForest on {len(split.y_train)} rows")
    started = time.perf_counter()
    forest = RandomForestClassifier(**client.model_params).fit(split.x_train, split.y_train)
    fit_seconds = time.perf_counter() - started
    return _Fitted(forest, compact_from_sklearn(forest), fit_seconds)


def _evaluate(run: _Run, split: _Split, fitted: _Fitted, champion: int | None) -> _Evaluation:
    forest = fitted.forest
    proba = forest.predict_proba(split.x_test)
    raw = {
        **evaluate(split.y_test, proba, forest.classes_, y_train=split.y_train),
        "train_rows": float(len(split.y_train)),
        "test_rows": float(len(split.y_test)),
        "n_classes": float(len(forest.classes_)),
        "fit_seconds": fitted.fit_seconds,
        "compact_model_mb": fitted.compact.nbytes / 2**20,
        "sklearn_model_mb": sum(
            t.tree_.value.nbytes + t.tree_.__getstate__()["nodes"].nbytes
            for t in forest.estimators_
        )
        / 2**20,
    }
    champion_value = _champion_score(run.settings, run.client, champion, split.x_test, split.y_test)
    if champion_value is not None:
        raw["champion_top5_accuracy"] = champion_value
    # what MLflow and Dagster show; the gate judges `raw`
    return _Evaluation(raw, round_metrics(raw), proba, champion_value)


def _log_evaluation(
    run: _Run, split: _Split, fitted: _Fitted, evaluation: _Evaluation
) -> WeakestCategories:
    """Stage 4, log: metrics and diagnostics on the run."""
    with tracking.store_lock(run.settings):
        mlflow.log_metrics(evaluation.metrics)
        return log_diagnostics(
            fitted.forest, list(run.client.features), split.y_test, evaluation.proba
        )


def _register_and_gate(
    run: _Run, split: _Split, fitted: _Fitted, evaluation: _Evaluation, champion: int | None
) -> _Registered:
    client = run.client
    gate = quality_gate(
        evaluation.raw[GATE_METRIC],
        client.quality_gate,
        champion,
        evaluation.champion_value,
        baseline_value=evaluation.raw.get(BASELINE_METRIC),
    )
    version_tags = {
        "run_id": run.run_id,
        "data_fingerprint": split.table.fingerprint,
        "code_version": run.tags["code_version"],
        "gate_status": "passed" if gate.passed else "failed",
        "gate_reason": gate.reason,
        **run.extra_tags,
    }
    with tracking.store_lock(run.settings):
        info = log_forest(
            fitted.forest,
            fitted.compact,
            split.x_test.head(5),
            id_column=client.id_column,
            top_k=client.top_k,
        )
        mv = mlflow.register_model(info.model_uri, client.model_name, tags=version_tags)
        version = int(mv.version)
        record_registration(info, client.model_name, version)
        mlflow.set_tags({"registered_model": client.model_name, "registered_version": version})
        if gate.passed:
            tracking.set_champion(run.mlflow, client.model_name, version)
            champion = version
        mlflow.set_tag("gate_status", version_tags["gate_status"])
    return _Registered(version, gate, champion)
