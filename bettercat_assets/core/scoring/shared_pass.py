"""The shared Spark pass: one `mapInPandas` job scores and writes every client, and its
workers save each client's pass statistics beside the predictions.

Output: `<staging>/client_id=<id>/part-*.parquet` (Spark's own commit protocol) and, per job,
`<stats_root>/<job>/<partition>-<attempt>.arrow` (`core/scoring/pass_stats.py`). If the shared
job fails (a malformed file, a worker crash), each client is scored again in a job of its own,
so the failure stays with the client that caused it.
"""

from __future__ import annotations

import functools
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from bettercat_assets.core.config.errors import BettercatError, DataError
from bettercat_assets.core.data.loading import load_scoring_table
from bettercat_assets.core.scoring.batch_scorer import CLIENT_COLUMN, OutputTransform, score_batches
from bettercat_assets.core.scoring.pass_stats import PassStatistic, TaskStats
from bettercat_assets.core.scoring.scoring_inputs import Prepared, shared_frame

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

Scorer = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]


class ScoringError(BettercatError):
    """Scoring one client failed for a reason other than its data (the message says which)."""


def scorer_for(
    prepared: Sequence[Prepared],
    statistics: Sequence[PassStatistic],
    stats_dir: Path,
    transform: OutputTransform | None = None,
) -> Scorer:
    """The `mapInPandas` function of one job (`transform`: see `batch_scorer.score_batches`)."""
    TaskStats(statistics)  # distinct names: checked here rather than in every task
    return functools.partial(
        score_batches,
        models={p.client.client_id: p.model for p in prepared},
        statistics=tuple(statistics),
        stats_dir=str(stats_dir),
        transform=transform,
    )


def _write_scores(
    spark: SparkSession,
    prepared: list[Prepared],
    target: Path,
    statistics: Sequence[PassStatistic],
    stats_dir: Path,
) -> None:
    scorer = scorer_for(prepared, statistics, stats_dir)
    scores = shared_frame(spark, prepared).mapInPandas(scorer, SHARED_OUTPUT_SCHEMA)
    scores.write.mode("append").partitionBy(CLIENT_COLUMN).parquet(str(target))


def score(
    spark: SparkSession,
    prepared: Mapping[str, Prepared],
    staging: Path,
    statistics: Sequence[PassStatistic],
    stats_root: Path,
) -> tuple[dict[str, BettercatError], list[Path]]:
    """Score every prepared client into `staging/client_id=<id>/`.

    Returns the clients that failed and the stats folders of the jobs that succeeded.
    """
    if not prepared:
        return {}, []
    shared = stats_root / uuid.uuid4().hex[:12]
    try:
        _write_scores(spark, list(prepared.values()), staging, statistics, shared)
        return {}, [shared]
    except (PySparkException, Py4JJavaError) as exc:
        if len(prepared) == 1:
            return {cid: explain(p, exc) for cid, p in prepared.items()}, []
        log.warning("shared scoring job failed; scoring %d clients one by one", len(prepared))
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(shared, ignore_errors=True)
    failed: dict[str, BettercatError] = {}
    done: list[Path] = []
    for cid, p in prepared.items():
        own = stats_root / uuid.uuid4().hex[:12]
        try:
            _write_scores(spark, [p], staging, statistics, own)
            done.append(own)
        except (PySparkException, Py4JJavaError) as exc:
            shutil.rmtree(staging / f"{CLIENT_COLUMN}={cid}", ignore_errors=True)
            shutil.rmtree(own, ignore_errors=True)
            failed[cid] = explain(p, exc)
    return failed, done


def explain(p: Prepared, exc: BaseException) -> BettercatError:
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
