"""Train, evaluate, track, register and gate one client's model (RandomForest or linear)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import matplotlib

matplotlib.use("Agg")
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from bettercat_assets import __version__  # noqa: E402
from bettercat_assets.core.config.clients import ClientConfig  # noqa: E402
from bettercat_assets.core.config.paths import DataLayout  # noqa: E402
from bettercat_assets.core.config.settings import TrackingSettings  # noqa: E402
from bettercat_assets.core.data.loading import load_training_table  # noqa: E402
from bettercat_assets.core.model.store import log_forest, record_registration  # noqa: E402
from bettercat_assets.core.monitoring.reference import reference_for_model  # noqa: E402
from bettercat_assets.core.tracking import runs as tracking  # noqa: E402
from bettercat_assets.core.tracking.lineage import code_version, git_sha  # noqa: E402
from bettercat_assets.core.tracking.views import runs_url  # noqa: E402
from bettercat_assets.core.training.assessment import Assessment, assess, judge  # noqa: E402
from bettercat_assets.core.training.descriptions import describe_training  # noqa: E402
from bettercat_assets.core.training.diagnostics import log_diagnostics  # noqa: E402
from bettercat_assets.core.training.evaluation import WeakestCategories  # noqa: E402
from bettercat_assets.core.training.fitting import FittedModel, fit_client_model  # noqa: E402
from bettercat_assets.core.training.gate import GateResult  # noqa: E402
from bettercat_assets.core.training.refit import (  # noqa: E402
    FITTED_ON_TAG,
    FinalModel,
    final_model,
    log_final_model,
)
from bettercat_assets.core.training.split import Split, split_train_test  # noqa: E402

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


_Split = Split  # stage 1, load and split: the validated table and its stratified split
_Fitted = FittedModel  # stage 2, fit: the estimator, its featurizer and compact form
_Evaluation = Assessment  # stage 3, evaluate (core/training/assessment.py)


@dataclass(frozen=True)
class _Registered:
    """Stage 6, register and gate: the new version and the champion after the gate."""

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

    Stages: load and split, fit, evaluate, log, refit (`refit_on_all_rows`: the registered
    model is fit again on every row; metrics, gate and profile stay the split model's),
    register and gate. The version becomes
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
        evaluation = assess(client, settings, run.mlflow, previous_champion, split, fitted)
        weakest = _log_evaluation(run, split, fitted, evaluation)
        final = _refit(run, split, fitted, progress)
        progress(f"{client.client_id}: logging and registering {client.model_name}")
        registered = _register_and_gate(run, split, fitted, final, evaluation, previous_champion)
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


def _refit(run: _Run, split: _Split, fitted: _Fitted, progress: Progress) -> FinalModel:
    """Stage 5, refit: the model to register (`core/training/refit.py`), logged on the run."""
    final = final_model(run.client, split.table, fitted, split.train_ids, progress)
    with tracking.store_lock(run.settings):
        log_final_model(final)
    return final


def _register_and_gate(
    run: _Run,
    split: _Split,
    fitted: _Fitted,
    final: FinalModel,
    evaluation: _Evaluation,
    champion: int | None,
) -> _Registered:
    """Register the final model; its gate and monitoring profile are the split model's (on
    the test split, which a refit model has seen)."""
    client = run.client
    gate = judge(client, evaluation, champion)
    version_tags = {
        "run_id": run.run_id,
        "data_fingerprint": split.table.fingerprint,
        "code_version": run.tags["code_version"],
        "gate_status": gate.verdict,
        "gate_metric": gate.metric,
        "gate_reason": gate.reason,
        FITTED_ON_TAG: final.fitted_on,
        **run.extra_tags,
    }
    with tracking.store_lock(run.settings):
        info = log_forest(
            final.fitted.estimator,
            final.fitted.compact,
            split.x_test.head(5),
            id_column=client.id_column,
            top_k=client.top_k,
            profile=reference_for_model(
                fitted.compact,
                split.table.features,
                split.x_test,
                split.y_test,
                client.monitoring.bins,
                classes=final.fitted.classes_,
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
