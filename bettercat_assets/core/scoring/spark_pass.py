"""Score clients' products with PySpark `mapInPandas`: top-k categories per product.

Many clients share one Spark pass (bench/RESULTS.md has the measurements):

* the driver resolves each client's version (`@champion` unless one is given), checks the
  scoring file's header, decompresses it beside the output (a `.csv.gz` is one Spark split;
  plain CSV splits across the cores) and ships the compact model to the executors
  (`core/scoring/model_shipping.py`);
* one DataFrame holds every client's products with its `client_id`, its features in the
  generic columns `f0..fN`; one `mapInPandas` job scores each client's rows with its own model
  (`core/scoring/batch_scorer.py`, whose workers import neither MLflow nor scikit-learn) and writes
  parquet partitioned by client;
* the checks aggregate the written output: one Spark job (`core/scoring/prediction_checks.py`), or
  for small inputs the same numbers on the driver (`core/scoring/local_prediction_stats.py`);
* each client's folder is then swapped into place on its own, so a reader never sees a
  half-written output, and one client's bad file fails only that client: if the shared job
  fails, every client is scored again in a job of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import logging
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError, DataError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.data.loading import check_scoring_header, load_scoring_table, read_header
from bettercat_assets.core.data.quality import CheckOutcome
from bettercat_assets.core.scoring.batch_scorer import (
    CLIENT_COLUMN,
    ID_COLUMN,
    ShippedModel,
    feature_column,
    score_batches,
    string_column,
    top_k_batch,
)
from bettercat_assets.core.scoring.local_prediction_stats import (
    LOCAL_CHECKS_MAX_BYTES,
    local_prediction_stats,
    read_input_ids,
    read_output,
)
from bettercat_assets.core.scoring.model_shipping import StagedModel, ship_model, stage_model
from bettercat_assets.core.scoring.output_lock import (
    OutputLock,
    OutputLockedError,
    acquire_output_lock,
    output_lock,
)
from bettercat_assets.core.scoring.prediction_checks import (
    InputStats,
    OutputStats,
    prediction_outcomes,
    prediction_stats,
)
from bettercat_assets.core.tracking import runs as tracking

__all__ = ["ScoringRequest", "ScoringResult", "predict_categories", "score_clients", "top_k_batch"]

log = logging.getLogger(__name__)

PREDICTION_FIELDS = [
    T.StructField("product_id", T.StringType(), False),
    T.StructField("pred_label", T.StringType(), False),
    T.StructField("pred_score", T.FloatType(), False),
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("model_version", T.IntegerType(), False),
]
#: The parquet schema users read (one client's folder).
OUTPUT_SCHEMA = T.StructType(PREDICTION_FIELDS)
#: The shared pass's schema: the same columns plus the client, which becomes the folder.
SHARED_OUTPUT_SCHEMA = T.StructType(
    [*PREDICTION_FIELDS, T.StructField(CLIENT_COLUMN, T.StringType(), False)]
)
LINEAGE_FILE = "_lineage.json"
PREVIEW_ROWS = 10
_COPY_BUFFER = 8 << 20


class ScoringError(BettercatError):
    """Scoring one client failed for a reason other than its data (the message says which)."""


@dataclass(frozen=True)
class ScoringRequest:
    """One client to score, with its champion unless `version` is given."""

    client: ClientConfig
    version: int | None = None


@dataclass(frozen=True)
class ScoringResult:
    """What one client's scoring wrote, for the CLI summary and Dagster metadata."""

    client_id: str
    model_name: str
    model_version: int
    run_id: str | None
    output_dir: Path
    rows_written: int
    products_scored: int
    preview: pd.DataFrame = field(repr=False)
    checks: tuple[CheckOutcome, ...] = ()
    #: Seconds per phase of the run that scored this client (shared by its clients).
    timings: Mapping[str, float] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class _Prepared:
    """A client ready for the shared pass: version resolved, model verified, input decompressed."""

    client: ClientConfig
    run_id: str | None
    source: Path
    header: list[str]
    features: list[str]
    plain_csv: Path
    staged: StagedModel

    @property
    def model(self) -> ShippedModel:
        return self.staged.model


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
) -> dict[str, ScoringResult | BettercatError]:
    """Score many clients in one Spark pass; each client gets its result or its own error.

    Output goes to `products_categories/client_id=<id>/date=<day>/`, written aside and swapped
    in, so a re-run replaces it and nothing half-written is ever visible.
    """
    requests = list(requests)
    outcomes: dict[str, ScoringResult | BettercatError] = {}
    timings: dict[str, float] = {}
    workdir, owner = _claim_workdir(layout, inference_date)
    locks: list[OutputLock] = [owner]
    try:
        prepared: dict[str, _Prepared] = {}
        for request in requests:
            cid = request.client.client_id
            try:
                # One writer per (client, date): held until this client's output is swapped in.
                locks.append(acquire_output_lock(cid, layout.predictions_dir(cid, inference_date)))
                prepared[cid] = _prepare(request, settings, layout, workdir, timings)
            except BettercatError as exc:
                outcomes[cid] = exc
        if not prepared:  # every client failed before Spark was needed: do not wait for it
            return {r.client.client_id: outcomes[r.client.client_id] for r in requests}
        session = _session(spark, timings)
        with _timed(timings, "model_shipping"):
            for p in prepared.values():
                ship_model(session, p.staged)
        staging = workdir / "output"
        with _timed(timings, "score_and_write"):
            outcomes |= _score(session, prepared, staging)
        scored = {cid: p for cid, p in prepared.items() if cid not in outcomes}
        if scored:
            outcomes |= _finalize_all(
                session,
                scored,
                staging,
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


def _session(spark: SparkSource, timings: dict[str, float]) -> SparkSession:
    """The session itself, or the one the function returns (time spent waiting: spark_wait).
    Neither classic nor Connect sessions are callable."""
    if not callable(spark):
        return spark
    with _timed(timings, "spark_wait"):
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


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the block's wall time to `timings[phase]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


# --------------------------------------------------------------------------- preparation


def _resolve_version(client: ClientConfig, settings: TrackingSettings, version: int | None):
    mlflow_client = tracking.mlflow_client(settings)
    if version is not None:
        return tracking.get_version(mlflow_client, client.model_name, version, client.client_id)
    return tracking.serving_version(mlflow_client, client.model_name, client.client_id)


def _prepare(
    request: ScoringRequest,
    settings: TrackingSettings,
    layout: DataLayout,
    workdir: Path,
    timings: dict[str, float],
) -> _Prepared:
    client = request.client
    cid = client.client_id
    with _timed(timings, "model_download"):
        mv = _resolve_version(client, settings, request.version)
        staged = stage_model(settings, cid, client.model_name, int(mv.version), client.top_k)
    features = list(staged.model.feature_names)
    with _timed(timings, "input_prep"):
        source = layout.predict_file(cid)
        header = read_header(cid, source)
        check_scoring_header(cid, source, header, client.id_column, features)
        plain = _decompress(cid, source, workdir / f"input-{cid}.csv")
    return _Prepared(
        client=client,
        run_id=mv.run_id,
        source=source,
        header=header,
        features=features,
        plain_csv=plain,
        staged=staged,
    )


def _decompress(client_id: str, source: Path, target: Path) -> Path:
    """Write `source` (gzip) to `target` as plain CSV, which Spark can split across cores."""
    try:
        with gzip.open(source, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_BUFFER)
    except (OSError, EOFError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        raise DataError(client_id, source, f"cannot read gzip CSV: {exc}") from None
    return target


# --------------------------------------------------------------------------- the Spark pass


def _input_schema(
    header: list[str], id_column: str, numeric: Iterable[str] | None = None
) -> T.StructType:
    """Numeric features as doubles; the id, text, categorical and extra columns as strings.
    `numeric` None: every column but the id is numeric."""
    numeric = set(header) - {id_column} if numeric is None else set(numeric)
    return T.StructType(
        [
            T.StructField(name, T.DoubleType() if name in numeric else T.StringType(), True)
            for name in header
        ]
    )


def read_products(
    spark: SparkSession,
    path: Path,
    header: list[str],
    id_column: str,
    numeric: Iterable[str] | None = None,
) -> DataFrame:
    """Read a scoring CSV with an explicit schema (no inference pass), failing on bad rows."""
    return spark.read.csv(
        str(path),
        header=True,
        schema=_input_schema(header, id_column, numeric),
        mode="FAILFAST",
        enforceSchema=False,
        multiLine=False,
        encoding="UTF-8",
        escape='"',  # RFC 4180 doubled quotes, as pandas and csv writers produce them
    )


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _client_frame(
    spark: SparkSession, p: _Prepared, width: int, string_width: int = 0
) -> DataFrame:
    """One client's products in the shared layout: client_id, product_id, its numeric features
    in f0..f{width-1} and its text/categorical ones in s0..s{string_width-1}. Only the model's
    features are selected; other columns of the file stay behind."""
    numeric, strings = p.model.numeric_features, p.model.string_features
    products = read_products(spark, p.plain_csv, p.header, p.client.id_column, numeric)
    return products.select(
        F.lit(p.client.client_id).alias(CLIENT_COLUMN),
        F.col(_quoted(p.client.id_column)).alias(ID_COLUMN),
        *[F.col(_quoted(name)).alias(feature_column(i)) for i, name in enumerate(numeric)],
        *[
            F.lit(None).cast(T.DoubleType()).alias(feature_column(i))
            for i in range(len(numeric), width)
        ],
        *[F.col(_quoted(name)).alias(string_column(i)) for i, name in enumerate(strings)],
        *[
            F.lit(None).cast(T.StringType()).alias(string_column(i))
            for i in range(len(strings), string_width)
        ],
    )


def _shared_frame(spark: SparkSession, prepared: Iterable[_Prepared]) -> DataFrame:
    prepared = list(prepared)
    width = max(len(p.model.numeric_features) for p in prepared)
    string_width = max(len(p.model.string_features) for p in prepared)
    frames = [_client_frame(spark, p, width, string_width) for p in prepared]
    return functools.reduce(DataFrame.unionByName, frames)


def _write_scores(spark: SparkSession, prepared: list[_Prepared], target: Path) -> None:
    scorer = functools.partial(
        score_batches, models={p.client.client_id: p.model for p in prepared}
    )
    scores = _shared_frame(spark, prepared).mapInPandas(scorer, SHARED_OUTPUT_SCHEMA)
    scores.write.mode("append").partitionBy(CLIENT_COLUMN).parquet(str(target))


def _score(
    spark: SparkSession, prepared: Mapping[str, _Prepared], staging: Path
) -> dict[str, BettercatError]:
    """Score every prepared client into `staging/client_id=<id>/`; returns the clients that failed.

    One shared job first; if it fails (a malformed file, a worker crash), each client is scored
    alone so the failure stays with the client that caused it.
    """
    if not prepared:
        return {}
    try:
        _write_scores(spark, list(prepared.values()), staging)
        return {}
    except (PySparkException, Py4JJavaError) as exc:
        if len(prepared) == 1:
            return {cid: _explain(p, exc) for cid, p in prepared.items()}
        log.warning("shared scoring job failed; scoring %d clients one by one", len(prepared))
    shutil.rmtree(staging, ignore_errors=True)
    failed: dict[str, BettercatError] = {}
    for cid, p in prepared.items():
        try:
            _write_scores(spark, [p], staging)
        except (PySparkException, Py4JJavaError) as exc:
            shutil.rmtree(staging / f"{CLIENT_COLUMN}={cid}", ignore_errors=True)
            failed[cid] = _explain(p, exc)
    return failed


def _explain(p: _Prepared, exc: BaseException) -> BettercatError:
    """A client's Spark failure as a user-facing error naming the client, the file and the column."""
    text = str(exc)
    if "Malformed" in text or "MALFORMED" in text:
        try:
            kinds = {n: "numeric" for n in p.model.numeric_features}
            kinds |= {n: "text" for n in p.model.string_features}
            load_scoring_table(p.client, p.source, p.features, kinds)  # names the column
        except DataError as data_error:
            return data_error
        return DataError(p.client.client_id, p.source, "malformed CSV record")
    first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    return ScoringError(f"client '{p.client.client_id}': Spark scoring failed: {first}")


# --------------------------------------------------------------------------- checks and swap


def _finalize_all(
    spark: SparkSession,
    scored: Mapping[str, _Prepared],
    staging: Path,
    day: date,
    layout: DataLayout,
    settings: TrackingSettings,
    extra_lineage: dict[str, str],
    timings: dict[str, float],
) -> dict[str, ScoringResult | BettercatError]:
    with _timed(timings, "checks"):
        out, inp = _check_stats(spark, scored, staging)
    results: dict[str, ScoringResult | BettercatError] = {}
    with _timed(timings, "swap_in"):
        for cid, p in scored.items():
            try:
                results[cid] = _finalize(
                    p, staging, out.get(cid), inp.get(cid), day, layout, settings, extra_lineage
                )
            except BettercatError as exc:
                results[cid] = exc
    return {
        cid: dataclasses.replace(r, timings=timings) if isinstance(r, ScoringResult) else r
        for cid, r in results.items()
    }


def _check_stats(
    spark: SparkSession, scored: Mapping[str, _Prepared], staging: Path
) -> tuple[dict[str, OutputStats], dict[str, InputStats]]:
    """The checks' numbers: on the driver for small inputs, else one Spark job."""
    rows_per_product = {cid: p.model.top_k for cid, p in scored.items()}
    if sum(p.plain_csv.stat().st_size for p in scored.values()) <= LOCAL_CHECKS_MAX_BYTES:
        return local_prediction_stats(
            {cid: read_output(staging / f"{CLIENT_COLUMN}={cid}") for cid in scored},
            {cid: read_input_ids(p.plain_csv, p.client.id_column) for cid, p in scored.items()},
            rows_per_product,
        )
    outputs = spark.read.schema(SHARED_OUTPUT_SCHEMA).parquet(str(staging))
    return prediction_stats(outputs, _shared_frame(spark, scored.values()), rows_per_product)


def _finalize(
    p: _Prepared,
    staging: Path,
    out: OutputStats | None,
    inp: InputStats | None,
    day: date,
    layout: DataLayout,
    settings: TrackingSettings,
    extra_lineage: dict[str, str],
) -> ScoringResult:
    cid = p.client.client_id
    if inp is None or inp.rows == 0 or out is None:
        raise DataError(cid, p.source, "no data rows (header only); nothing was written")
    if inp.rows != inp.distinct_ids:
        raise DataError(
            cid,
            p.source,
            f"column '{p.client.id_column}' has duplicate values; nothing was written",
        )
    champion = tracking.champion_version(tracking.mlflow_client(settings), p.client.model_name)
    checks = prediction_outcomes(
        out,
        inp,
        n_classes=p.model.n_classes,
        k=p.client.top_k,
        champion_version=int(champion.version) if champion else None,
    )
    client_dir = staging / f"{CLIENT_COLUMN}={cid}"
    lineage = {
        "client_id": cid,
        "model_name": p.client.model_name,
        "model_version": p.model.version,
        "model_run_id": p.run_id,
        "input_path": str(p.source),
        "scored_at": datetime.now(timezone.utc).isoformat(),
        "inference_date": day.isoformat(),
        **extra_lineage,
    }
    (client_dir / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2))
    preview = _preview(client_dir)
    final = layout.predictions_dir(cid, day)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(final)
    _swap_in(client_dir, final)
    return ScoringResult(
        client_id=cid,
        model_name=p.client.model_name,
        model_version=p.model.version,
        run_id=p.run_id,
        output_dir=final,
        rows_written=out.rows,
        products_scored=out.products,
        preview=preview,
        checks=tuple(checks),
    )


def _preview(client_dir: Path) -> pd.DataFrame:
    """The first rows of the client's first part file (a streaming read of one small batch)."""
    for part in sorted(client_dir.glob("part-*.parquet")):
        batch = next(pq.ParquetFile(part).iter_batches(batch_size=PREVIEW_ROWS), None)
        if batch is not None and batch.num_rows:
            return batch.to_pandas()
    return pd.DataFrame(columns=[f.name for f in PREDICTION_FIELDS])


def _clear_leftovers(final: Path) -> None:
    """Clean up after a run killed mid-swap or mid-write; call it only holding the output lock.

    A run killed between the two renames of `_swap_in` leaves the previous output only as
    `_old-*`: put it back first, then remove staging/old/input leftovers.
    """
    olds = sorted(final.parent.glob(f"_old-{final.name}-*"), key=lambda p: p.stat().st_mtime)
    if not final.exists() and olds:
        os.rename(olds[-1], final)
    for stale in final.parent.glob(f"_*-{final.name}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _swap_in(staging: Path, final: Path) -> None:
    """Replace `final` with `staging` by renames: readers never see a half-written directory."""
    old = final.parent / f"_old-{final.name}-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)
