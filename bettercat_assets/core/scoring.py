"""Score a client's products with PySpark `mapInPandas`: top-k categories per product.

Where the time goes, and what keeps it low (bench/RESULTS.md has the measurements):

* a `.csv.gz` is one Spark split, so one core would parse and score everything. The driver
  decompresses it next to the output (`_input-.../products.csv`, removed afterwards): Spark
  splits plain CSV across the cores without a shuffle;
* each Python worker loads the compact model once (`load_compact` caches per process) and
  builds its output columns with Arrow (`take`), not with per-row Python objects;
* the written output is checked (row count, duplicate ids, preview) with pyarrow in the driver
  rather than with two more Spark jobs.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from py4j.protocol import Py4JJavaError
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
from bettercat_assets.core.topk import top_k_indices

OUTPUT_SCHEMA = T.StructType(
    [
        T.StructField("product_id", T.StringType(), False),
        T.StructField("pred_label", T.StringType(), False),
        T.StructField("pred_score", T.FloatType(), False),
        T.StructField("rank", T.IntegerType(), False),
        T.StructField("model_version", T.IntegerType(), False),
    ]
)
OUTPUT_SCHEMA_ARROW = [
    ("product_id", pa.string()),
    ("pred_label", pa.string()),
    ("pred_score", pa.float32()),
    ("rank", pa.int32()),
    ("model_version", pa.int32()),
]
LINEAGE_FILE = "_lineage.json"
PREVIEW_ROWS = 10
_COPY_BUFFER = 8 << 20


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


def top_k_batch(
    product_ids: pd.Series, proba: np.ndarray, labels: pa.Array, k: int, model_version: int
) -> pd.DataFrame:
    """Same rows as `topk.top_k_frame`, with the string columns built by Arrow `take`.

    Repeating the ids and looking up the labels as Python objects costs more than the model
    on large batches; Arrow-backed columns go to Spark without a per-row conversion.
    """
    best = top_k_indices(proba, k)
    n_rows, kk = best.shape
    ids = pa.array(product_ids, type=pa.string(), from_pandas=True)
    return pd.DataFrame(
        {
            "product_id": pd.arrays.ArrowExtensionArray(ids.take(np.repeat(np.arange(n_rows), kk))),
            "pred_label": pd.arrays.ArrowExtensionArray(labels.take(best.ravel())),
            "pred_score": np.take_along_axis(proba, best, axis=1).ravel().astype(np.float32),
            "rank": np.tile(np.arange(kk, dtype=np.int32), n_rows),
            "model_version": np.full(n_rows * kk, model_version, dtype=np.int32),
        }
    )


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
    labels = pa.array(forest.classes_.tolist(), type=pa.string())
    for batch in batches:
        X = np.ascontiguousarray(batch[features].to_numpy(dtype=np.float32, na_value=np.nan))
        yield top_k_batch(batch[id_column], forest.predict_proba(X), labels, k, version)


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
        escape='"',  # RFC 4180 doubled quotes, as pandas and csv writers produce them
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


def _check_written(
    client_id: str, path: Path, staging: Path, id_column: str, per_product: int
) -> tuple[int, int, pd.DataFrame]:
    """(rows, distinct products, preview) of the written parquet, in one streaming pyarrow pass.

    Every product yields `per_product` rows, so rows != distinct * per_product means the input
    had duplicate ids. The preview is the first rows by (product_id, rank). Files are read in
    small batches through a buffered stream, so the driver holds ~10 MB of Arrow buffers plus
    the rank-0 ids whatever the output size.
    """
    keys = [("product_id", "ascending"), ("rank", "ascending")]
    rows, firsts, head = 0, [], pa.schema(OUTPUT_SCHEMA_ARROW).empty_table()
    for part in ds.dataset(staging, format="parquet").files:  # skips _SUCCESS, .crc files
        parquet = pq.ParquetFile(part, buffer_size=1 << 20, pre_buffer=False)
        for batch in parquet.iter_batches(batch_size=1 << 16, use_threads=False):
            rows += batch.num_rows
            ranks, ids = batch.column("rank"), batch.column("product_id")
            firsts.append(pc.filter(ids, pc.equal(ranks, 0)))
            table = pa.concat_tables([head, pa.Table.from_batches([batch]).cast(head.schema)])
            head = table.take(pc.select_k_unstable(table, min(PREVIEW_ROWS, table.num_rows), keys))
    ids = pa.chunked_array(firsts, type=pa.string())
    distinct = pc.count_distinct(ids).as_py() if len(ids) else 0
    if rows == 0:
        raise DataError(client_id, path, "no data rows (header only); nothing was written")
    if rows != distinct * per_product:
        raise DataError(
            client_id, path, f"column '{id_column}' has duplicate values; nothing was written"
        )
    return rows, distinct, head.sort_by(keys).to_pandas()


def _clear_leftovers(final: Path) -> None:
    """Clean up after a run killed mid-swap or mid-write.

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
    tag = uuid.uuid4().hex[:8]
    staging = final.parent / f"_staging-{final.name}-{tag}"
    # Beside the output: wherever Spark runs (local, cluster, Connect) it writes there too.
    # In a "_" directory that readers of the output skip; the file name itself must not start
    # with "_" or Spark skips it too.
    plain_dir = final.parent / f"_input-{final.name}-{tag}"

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
        plain_dir.mkdir()
        products = read_products(
            spark, _decompress(cid, path, plain_dir / "products.csv"), header, client.id_column
        )
        products.select(client.id_column, *features).mapInPandas(scorer, OUTPUT_SCHEMA).write.mode(
            "overwrite"
        ).parquet(str(staging))
        rows, distinct_products, preview = _check_written(
            cid, path, staging, client.id_column, min(client.top_k, len(forest.classes_))
        )
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
    except (PySparkException, Py4JJavaError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if "Malformed" in str(exc) or "MALFORMED" in str(exc):
            load_scoring_table(client, path, features)  # raises a DataError naming the column
            raise DataError(cid, path, "malformed CSV record") from None
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(plain_dir, ignore_errors=True)

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
