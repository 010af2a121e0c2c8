"""Score clients' products with PySpark `mapInPandas`: top-k categories per product.

Many clients share one Spark pass (bench/RESULTS.md has the measurements):

* the driver resolves each client's version (`@champion` unless one is given), checks the
  scoring file's header, decompresses it beside the output (a `.csv.gz` is one Spark split;
  plain CSV splits across the cores) and ships the compact model to the executors
  (`core/scoring/scoring_inputs.py`, `core/scoring/model_shipping.py`);
* one DataFrame holds every client's products with its `client_id`, its features in the
  generic columns `f0..fN`; one `mapInPandas` job scores each client's rows with its own model
  (`core/scoring/batch_scorer.py`, whose workers import neither MLflow nor scikit-learn), writes
  parquet partitioned by client, and saves each client's pass statistics beside it
  (`core/scoring/shared_pass.py`, `core/scoring/pass_stats.py`);
* the checks come from those statistics and the Parquet footers, with no second read of the
  inputs or the output (`core/scoring/check_stats.py`, `core/scoring/prediction_checks.py`);
* each client's folder is then swapped into place on its own (`core/scoring/finalize.py`), so
  a reader never sees a half-written output, and one client's bad file fails only that client.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import SparkSession

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.scoring.batch_scorer import top_k_batch
from bettercat_assets.core.scoring.check_stats import CheckStatistic
from bettercat_assets.core.scoring.finalize import (
    LINEAGE_FILE,
    PREVIEW_ROWS,
    ScoringResult,
    finalize_all,
)
from bettercat_assets.core.scoring.finalize import clear_leftovers as _clear_leftovers
from bettercat_assets.core.scoring.model_shipping import ship_model
from bettercat_assets.core.scoring.output_lock import (
    OutputLock,
    OutputLockedError,
    acquire_output_lock,
    output_lock,
)
from bettercat_assets.core.scoring.pass_stats import PassStatistic
from bettercat_assets.core.scoring.scoring_inputs import Prepared, prepare, read_products
from bettercat_assets.core.scoring.shared_pass import (
    OUTPUT_SCHEMA,
    SHARED_OUTPUT_SCHEMA,
    ScoringError,
    score,
)
from bettercat_assets.core.scoring.timing import timed

__all__ = [
    "LINEAGE_FILE",
    "OUTPUT_SCHEMA",
    "PREVIEW_ROWS",
    "SHARED_OUTPUT_SCHEMA",
    "ScoringError",
    "ScoringRequest",
    "ScoringResult",
    "_clear_leftovers",
    "predict_categories",
    "read_products",
    "score_clients",
    "top_k_batch",
]

#: What every pass computes: the checks' numbers. Callers add their own statistics.
BUILTIN_STATISTICS: tuple[PassStatistic, ...] = (CheckStatistic(),)


@dataclass(frozen=True)
class ScoringRequest:
    """One client to score, with its champion unless `version` is given."""

    client: ClientConfig
    version: int | None = None


#: A session, or a function that returns one: called once the driver-side preparation (which
#: needs no Spark) is done, so a session starting in the background overlaps with it.
SparkSource = SparkSession | Callable[[], SparkSession]


def predict_categories(
    client: ClientConfig,
    inference_date: date,
    *,
    spark: SparkSource,
    layout: DataLayout,
    settings: TrackingSettings,
    version: int | None = None,
    extra_lineage: dict[str, str] | None = None,
) -> ScoringResult:
    """Score one client's `data_predict.csv.gz` and write its parquet; raise its error."""
    outcome = score_clients(
        [ScoringRequest(client, version)],
        inference_date,
        spark=spark,
        layout=layout,
        settings=settings,
        extra_lineage=extra_lineage,
    )[client.client_id]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def score_clients(
    requests: Iterable[ScoringRequest],
    inference_date: date,
    *,
    spark: SparkSource,
    layout: DataLayout,
    settings: TrackingSettings,
    extra_lineage: dict[str, str] | None = None,
    statistics: Sequence[PassStatistic] = (),
) -> dict[str, ScoringResult | BettercatError]:
    """Score many clients in one Spark pass; each client gets its result or its own error.

    Output goes to `products_categories/client_id=<id>/date=<day>/`, written aside and swapped
    in, so a re-run replaces it and nothing half-written is ever visible. `statistics` are
    folded in the same pass besides the checks' own; each client's merged states come back in
    `ScoringResult.pass_stats`.
    """
    requests = list(requests)
    statistics = (*BUILTIN_STATISTICS, *statistics)
    outcomes: dict[str, ScoringResult | BettercatError] = {}
    timings: dict[str, float] = {}
    workdir, owner = _claim_workdir(layout, inference_date)
    locks: list[OutputLock] = [owner]
    try:
        prepared = _prepare_all(
            requests, inference_date, settings, layout, workdir, locks, outcomes, timings
        )
        if not prepared:  # every client failed before Spark was needed: do not wait for it
            return {r.client.client_id: outcomes[r.client.client_id] for r in requests}
        session = _session(spark, timings)
        with timed(timings, "model_shipping"):
            for p in prepared.values():
                ship_model(session, p.staged)
        staging = workdir / "output"
        with timed(timings, "score_and_write"):
            failed, stats_dirs = score(session, prepared, staging, statistics, workdir / "stats")
        outcomes |= failed
        scored = {cid: p for cid, p in prepared.items() if cid not in outcomes}
        if scored:
            outcomes |= finalize_all(
                scored,
                staging,
                stats_dirs,
                statistics,
                inference_date,
                layout,
                settings,
                extra_lineage or {},
                timings,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        for lock in locks:
            lock.release()
    return {r.client.client_id: outcomes[r.client.client_id] for r in requests}


def _prepare_all(
    requests: list[ScoringRequest],
    day: date,
    settings: TrackingSettings,
    layout: DataLayout,
    workdir: Path,
    locks: list[OutputLock],
    failures: dict[str, ScoringResult | BettercatError],
    timings: dict[str, float],
) -> dict[str, Prepared]:
    """Lock and prepare each client; one that fails gets its error in `failures`."""
    prepared: dict[str, Prepared] = {}
    for request in requests:
        cid = request.client.client_id
        try:
            # One writer per (client, date): held until this client's output is swapped in.
            locks.append(acquire_output_lock(cid, layout.predictions_dir(cid, day)))
            prepared[cid] = prepare(
                request.client, request.version, settings, layout, workdir, timings
            )
        except BettercatError as exc:
            failures[cid] = exc
    return prepared


def _session(spark: SparkSource, timings: dict[str, float]) -> SparkSession:
    """The session itself, or the one the function returns (time spent waiting: spark_wait).
    Neither classic nor Connect sessions are callable."""
    if not callable(spark):
        return spark
    with timed(timings, "spark_wait"):
        return spark()


def _claim_workdir(layout: DataLayout, day: date) -> tuple[Path, OutputLock]:
    """A fresh scratch folder, locked for this run's lifetime; abandoned ones are removed.

    A run that crashed leaves its folder behind, unlocked (the kernel drops a dead process's
    lock): only those are removed, never the folder of a run that is still writing.
    """
    workdir = layout.scoring_workdir(day, uuid.uuid4().hex[:8])
    owner = acquire_output_lock("", workdir)  # taken before the folder exists
    for leftover in workdir.parent.glob("_run-*"):
        if leftover == workdir or not leftover.is_dir():
            continue
        try:
            with output_lock("", leftover):
                shutil.rmtree(leftover, ignore_errors=True)
        except OutputLockedError:
            continue  # a live run's folder
    workdir.mkdir(parents=True)
    return workdir, owner
