"""Score a client's products with PySpark `mapInPandas`: top-k categories per product."""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from bettercat_assets.core import tracking
from bettercat_assets.core.config import ClientConfig
from bettercat_assets.core.data import check_scoring_header, load_scoring_table, read_header
from bettercat_assets.core.errors import DataError
from bettercat_assets.core.model_store import load_compact
from bettercat_assets.core.paths import DataLayout
from bettercat_assets.core.settings import TrackingSettings
from bettercat_assets.core.spark_session import default_parallelism, is_connect
from bettercat_assets.core.topk import top_k_frame

OUTPUT_SCHEMA = T.StructType(
    [
        T.StructField("product_id", T.StringType(), False),
        T.StructField("pred_label", T.StringType(), False),
        T.StructField("pred_score", T.FloatType(), False),
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("model_version", T.IntegerType(), False),
    ]
)
LINEAGE_FILE = "_lineage.json"


@dataclass(frozen=True)
class ScoringResult:
    """What one scoring wrote, for the CLI summary and Dagster metadata."""

    client_id: str
    model_name: str
    model_version: int
    run_id: str | None
    output_dir: Path
    rows_written: int
    products_scored: int
    preview: pd.DataFrame = field(repr=False)


def score_batches(
    batches: Iterator[pd.DataFrame],
    settings: TrackingSettings,
    model_name: str,
    version: int,
    features: list[str],
    id_column: str,
    k: int,
) -> Iterator[pd.DataFrame]:
    """`mapInPandas` body: runs in the Python workers; the model loads once per worker process."""
    forest = load_compact(settings, model_name, version)
    for batch in batches:
        proba = forest.predict_proba(batch[features].to_numpy(dtype=np.float32, na_value=np.nan))
        yield top_k_frame(batch[id_column].to_numpy(), proba, forest.classes_, k, version)


def _input_schema(header: list[str], id_column: str) -> T.StructType:
    return T.StructType(
        [
            T.StructField(name, T.StringType() if name == id_column else T.DoubleType(), True)
            for name in header
        ]
    )


def read_products(spark: SparkSession, path: Path, header: list[str], id_column: str) -> DataFrame:
    """Read the scoring CSV with an explicit schema (no inference pass), failing on bad rows."""
    return spark.read.csv(
        str(path),
        header=True,
        schema=_input_schema(header, id_column),
        mode="FAILFAST",
        enforceSchema=False,
        multiLine=False,
        encoding="UTF-8",
    )


def _clear_leftovers(final: Path) -> None:
    """Remove staging/old directories a killed run may have left beside `final`."""
    for stale in final.parent.glob(f"_*-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _swap_in(staging: Path, final: Path) -> None:
    """Replace `final` with `staging` by renames: readers never see a half-written directory."""
    old = final.parent / f"_old-{final.name}-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def predict_categories(
    client: ClientConfig,
    inference_date: date,
    *,
    spark: SparkSession,
    layout: DataLayout,
    settings: TrackingSettings,
    version: int | None = None,
    extra_lineage: dict[str, str] | None = None,
) -> ScoringResult:
    """Score `data_predict.csv.gz` with the client's champion (or `version`) and write parquet.

    Output goes to `products_categories/client_id=<id>/date=<day>/`, written aside and swapped
    in, so a re-run replaces it and nothing half-written is ever visible.
    """
    cid = client.client_id
    client_mlflow = tracking.mlflow_client(settings)
    mv = (
        tracking.get_version(client_mlflow, client.model_name, version, cid)
        if version is not None
        else tracking.serving_version(client_mlflow, client.model_name, cid)
    )
    model_version = int(mv.version)
    forest = load_compact(settings, client.model_name, model_version)  # fail fast on the driver
    features = [str(f) for f in forest.feature_names]

    path = layout.predict_file(cid)
    header = read_header(cid, path)
    check_scoring_header(cid, path, header, client.id_column, features)

    final = layout.predictions_dir(cid, inference_date)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(final)
    staging = final.parent / f"_staging-{final.name}-{uuid.uuid4().hex[:8]}"

    products = read_products(spark, path, header, client.id_column)
    parallelism = default_parallelism(spark)
    # A .gz file is one split; spread it so every core scores (Connect has no .rdd to ask).
    if is_connect(spark) or products.rdd.getNumPartitions() < parallelism:
        products = products.repartition(parallelism)
    scorer = functools.partial(
        score_batches,
        settings=settings,
        model_name=client.model_name,
        version=model_version,
        features=features,
        id_column=client.id_column,
        k=client.top_k,
    )
    try:
        products.select(client.id_column, *features).mapInPandas(scorer, OUTPUT_SCHEMA).write.mode(
            "overwrite"
        ).parquet(str(staging))
        written = spark.read.parquet(str(staging))
        counts = written.selectExpr("count(*) AS rows", "count(DISTINCT product_id) AS products")
        rows, distinct_products = counts.first()
        expected_rows = distinct_products * min(client.top_k, len(forest.classes_))
        if rows != expected_rows:
            raise DataError(
                cid, path, f"column '{client.id_column}' has duplicate values; nothing was written"
            )
        preview = written.orderBy("product_id", "rank").limit(10).toPandas()
        lineage = {
            "client_id": cid,
            "model_name": client.model_name,
            "model_version": model_version,
            "model_run_id": mv.run_id,
            "input_path": str(path),
            "scored_at": datetime.now(timezone.utc).isoformat(),
            "inference_date": inference_date.isoformat(),
            **(extra_lineage or {}),
        }
        (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2))
        _swap_in(staging, final)
    except PySparkException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if "Malformed" in str(exc) or "MALFORMED" in str(exc):
            load_scoring_table(client, path, features)  # raises a DataError naming the column
            raise DataError(cid, path, "malformed CSV record") from None
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    return ScoringResult(
        client_id=cid,
        model_name=client.model_name,
        model_version=model_version,
        run_id=mv.run_id,
        output_dir=final,
        rows_written=int(rows),
        products_scored=int(distinct_products),
        preview=preview,
    )
