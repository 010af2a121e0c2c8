"""Section 1: scoring throughput.

* LIMIT: plain Python, no Spark: two processes each read the .csv.gz with pyarrow, keep their
  half of the rows, predict with the pickled sklearn forest, take the top 5 (argpartition) and
  write parquet. Process start (forkserver) and model load are included.
* OURS: `bettercat_assets.core.scoring.spark_pass.predict_categories` on local[2].
* SEED: what the first version did: the sklearn forest broadcast from the driver, gz read plus
  repartition, full `np.argsort` per row, pandas repeat, Spark's default Arrow batch size.

The functions here run in a child process (`bench.child`) or, at tiny sizes, in the smoke
test. Worker-side functions are pickled by value so Spark workers need not import `bench`.
"""

from __future__ import annotations

import functools
import multiprocessing
import pickle
import shutil
import sys
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyspark import cloudpickle

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.data.loading import read_header
from bettercat_assets.core.model.compact_forest import CompactForest
from bettercat_assets.core.model.store import load_sklearn
from bettercat_assets.core.scoring.spark_pass import (
    OUTPUT_SCHEMA,
    predict_categories,
    read_products,
)
from bettercat_assets.core.spark.session import build_spark_session, default_parallelism

from .rss import tree_cpu_seconds
from .workspace import Workspace

cloudpickle.register_pickle_by_value(sys.modules[__name__])

K = 5
SPARK_DEFAULT_BATCH = 10_000  # spark.sql.execution.arrow.maxRecordsPerBatch's own default


# --------------------------------------------------------------------------- LIMIT


def top_k_argpartition(proba: np.ndarray, k: int) -> np.ndarray:
    k = min(k, proba.shape[1])
    part = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(proba, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _limit_part(args: tuple[Any, ...]) -> dict[str, float]:
    part, parts, predict_file, model_path, kind, features, id_column, k, out_dir = args
    warnings.filterwarnings("ignore")  # sklearn: "X does not have valid feature names"
    t0 = time.perf_counter()
    if kind == "sklearn":
        with open(model_path, "rb") as fh:
            forest = pickle.load(fh)
        forest.set_params(n_jobs=1)
    else:
        forest = CompactForest.load(Path(model_path))
    t_model = time.perf_counter()
    types = {id_column: pa.string(), **{f: pa.float64() for f in features}}
    table = pacsv.read_csv(predict_file, convert_options=pacsv.ConvertOptions(column_types=types))
    lo, hi = table.num_rows * part // parts, table.num_rows * (part + 1) // parts
    table = table.slice(lo, hi - lo)
    X = np.column_stack([table[f].to_numpy() for f in features]).astype(np.float32)
    t_read = time.perf_counter()
    proba = forest.predict_proba(X)
    t_predict = time.perf_counter()
    best = top_k_argpartition(proba, k)
    n, kk = best.shape
    classes = pa.array(np.asarray(forest.classes_).astype(str).tolist(), pa.string())
    out = pa.table(
        {
            "product_id": table[id_column].take(np.repeat(np.arange(n), kk)),
            "pred_label": classes.take(best.ravel()),
            "pred_score": np.take_along_axis(proba, best, axis=1).ravel().astype(np.float32),
            "rank": np.tile(np.arange(kk, dtype=np.int32), n),
            "model_version": np.full(n * kk, 1, dtype=np.int32),
        }
    )
    pq.write_table(out, Path(out_dir) / f"part-{part:05d}.parquet")
    t_end = time.perf_counter()
    return {
        "rows": float(n),
        "model_load_s": t_model - t0,
        "read_s": t_read - t_model,
        "predict_s": t_predict - t_read,
        "topk_write_s": t_end - t_predict,
    }


def run_limit(
    predict_file: Path,
    model_path: Path,
    features: list[str],
    out_dir: Path,
    *,
    kind: str = "sklearn",
    id_column: str = "product_id",
    k: int = K,
    processes: int = 2,
) -> dict[str, Any]:
    """Score the file in `processes` worker processes; wall time includes start and load."""
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    args = [
        (i, processes, str(predict_file), str(model_path), kind, features, id_column, k, out_dir)
        for i in range(processes)
    ]
    c0, t0 = tree_cpu_seconds(), time.perf_counter()
    # forkserver: children start from a clean server process, never from a parent that may
    # already hold a Spark (py4j) session, whose sockets a plain fork would share.
    with multiprocessing.get_context("forkserver").Pool(processes) as pool:
        parts = pool.map(_limit_part, args)
    wall = time.perf_counter() - t0
    rows = int(sum(p["rows"] for p in parts))
    return {
        "rows": rows,
        "wall_s": wall,
        "cpu_s": tree_cpu_seconds() - c0,
        "rows_per_s": rows / wall,
        "parts": parts,
    }


# --------------------------------------------------------------------------- OURS


def start_spark(conf: dict[str, str] | None = None, master: str = "local[2]"):
    t0 = time.perf_counter()
    spark = build_spark_session(master=master, conf=conf)
    spark.range(1).count()  # the JVM and the scheduler are up
    return spark, time.perf_counter() - t0


def run_ours(
    ws: Workspace, cfg: ClientConfig, day: date, spark: Any, *, warm_repeat: bool = True
) -> dict[str, Any]:
    """`predict_categories` once on a fresh session (workers start, load the model), then again."""
    c0, t0 = tree_cpu_seconds(), time.perf_counter()
    result = predict_categories(cfg, day, spark=spark, layout=ws.layout, settings=ws.settings)
    first = time.perf_counter() - t0
    out: dict[str, Any] = {
        "rows": result.products_scored,
        "rows_written": result.rows_written,
        "model_version": result.model_version,
        "wall_s": first,
        "cpu_s": tree_cpu_seconds() - c0,
        "rows_per_s": result.products_scored / first,
    }
    if warm_repeat:
        c0, t0 = tree_cpu_seconds(), time.perf_counter()
        predict_categories(cfg, day, spark=spark, layout=ws.layout, settings=ws.settings)
        out["warm_wall_s"] = time.perf_counter() - t0
        out["warm_cpu_s"] = tree_cpu_seconds() - c0
        out["warm_rows_per_s"] = result.products_scored / out["warm_wall_s"]
    return out


# --------------------------------------------------------------------------- SEED


def seed_batches(batches, forest_bc, features, id_column, k, version):
    """The seed's scorer: broadcast sklearn forest, float64 frame, full argsort, pandas repeat."""
    warnings.filterwarnings("ignore")
    forest = forest_bc.value
    for batch in batches:
        proba = forest.predict_proba(batch[features])
        order = np.argsort(-proba, axis=1)[:, :k]
        out = batch[[id_column]].loc[batch.index.repeat(k)].reset_index(drop=True)
        out.columns = ["product_id"]
        out["pred_label"] = forest.classes_[order].ravel()
        out["pred_score"] = np.take_along_axis(proba, order, axis=1).ravel().astype(np.float32)
        out["rank"] = np.tile(np.arange(k, dtype=np.int32), len(batch))
        out["model_version"] = np.int32(version)
        yield out


def run_seed(
    ws: Workspace, cfg: ClientConfig, version: int, spark: Any, out_dir: Path
) -> dict[str, Any]:
    """Seed-style scoring; wall includes loading the sklearn model and broadcasting it."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(SPARK_DEFAULT_BATCH))
    try:
        return _run_seed(ws, cfg, version, spark, out_dir)
    finally:
        if before is not None:
            spark.conf.set(key, before)


def _run_seed(
    ws: Workspace, cfg: ClientConfig, version: int, spark: Any, out_dir: Path
) -> dict[str, Any]:
    path = ws.layout.predict_file(cfg.client_id)
    header = read_header(cfg.client_id, path)
    features = list(cfg.features)
    c0, t0 = tree_cpu_seconds(), time.perf_counter()
    forest = load_sklearn(ws.settings, cfg.model_name, version)
    forest.set_params(n_jobs=1)
    t_load = time.perf_counter()
    forest_bc = spark.sparkContext.broadcast(forest)
    del forest
    t_bc = time.perf_counter()
    products = read_products(spark, path, header, cfg.id_column)
    products = products.repartition(default_parallelism(spark))
    scorer = functools.partial(
        seed_batches,
        forest_bc=forest_bc,
        features=features,
        id_column=cfg.id_column,
        k=cfg.top_k,
        version=version,
    )
    products.select(cfg.id_column, *features).mapInPandas(scorer, OUTPUT_SCHEMA).write.mode(
        "overwrite"
    ).parquet(str(out_dir))
    wall = time.perf_counter() - t0
    cpu = tree_cpu_seconds() - c0
    forest_bc.destroy()
    rows = pq.ParquetDataset(out_dir).read(columns=["rank"]).num_rows // cfg.top_k
    return {
        "rows": rows,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": rows / wall,
        "model_load_s": t_load - t0,
        "broadcast_s": t_bc - t_load,
    }


def read_output(out_dir: Path) -> pd.DataFrame:
    return pq.ParquetDataset(out_dir).read().to_pandas()
