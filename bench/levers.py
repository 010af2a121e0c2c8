"""The lever ladder: the scoring pipeline with each performance lever switchable.

Each step changes one thing from the previous step (or, for alternatives, from the step it
names), runs in a fresh Spark session and is timed without the session start. It starts at
the seed-style pipeline, passes the committed pipeline before this work ("HEAD") and ends at
`predict_categories` as it is now.
"""

from __future__ import annotations

import functools
import gzip
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyspark import cloudpickle

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import DataError
from bettercat_assets.core.data.loading import read_header
from bettercat_assets.core.model.store import load_compact, load_sklearn
from bettercat_assets.core.model.topk import top_k_frame
from bettercat_assets.core.scoring.batch_scorer import top_k_batch
from bettercat_assets.core.scoring.spark_pass import OUTPUT_SCHEMA, PREVIEW_ROWS, read_products
from bettercat_assets.core.spark.session import default_parallelism

from .rss import tree_cpu_seconds
from .workspace import Workspace

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class Lever:
    """One configuration of the pipeline."""

    model: str = "compact_worker"  # or "sklearn_broadcast"
    topk: str = "argpartition"  # or "argsort"
    output: str = "arrow"  # or "pandas_repeat" (object arrays, np.repeat)
    batch: int = 20_000  # spark.sql.execution.arrow.maxRecordsPerBatch
    input: str = "plain_split"  # gz | gz_repartition | plain_split | driver_arrow
    verify: str = "pyarrow"  # none | spark | pyarrow
    numba_threads: int | None = None  # NUMBA_NUM_THREADS for the Python workers


SEED = Lever(
    model="sklearn_broadcast",
    topk="argsort",
    output="pandas_repeat",
    batch=10_000,
    input="gz_repartition",
    verify="none",
)
HEAD = Lever(
    model="compact_worker",
    topk="argpartition",
    output="pandas_repeat",
    batch=20_000,
    input="gz_repartition",
    verify="spark",
)
NOW = Lever()

#: (name, lever, compared with): a ladder from SEED to NOW; `compared with` None = the row above.
LADDER: list[tuple[str, Lever, str | None]] = [
    ("seed: broadcast sklearn, argsort, pandas repeat, gz+repartition, batch 10k", SEED, None),
    ("compact model loaded in each worker (no broadcast)", replace(SEED, model="compact_worker"), None),
    ("argpartition top-k", replace(SEED, model="compact_worker", topk="argpartition"), None),
    ("Arrow batch 20k", replace(HEAD, verify="none"), None),
    ("+ count/distinct and preview as 2 Spark jobs = HEAD", HEAD, None),
    ("input: gz as 1 split, no repartition", replace(HEAD, input="gz"), "+ count/distinct and preview as 2 Spark jobs = HEAD"),
    ("input: driver decompresses, Spark splits plain CSV", replace(HEAD, input="plain_split"), "+ count/distinct and preview as 2 Spark jobs = HEAD"),
    ("output columns by Arrow take (no Python objects)", replace(HEAD, input="plain_split", output="arrow"), None),
    ("check output with pyarrow in the driver = NOW", NOW, None),
    ("Arrow batch 50k", replace(NOW, batch=50_000), "check output with pyarrow in the driver = NOW"),
    ("Arrow batch 100k", replace(NOW, batch=100_000), "check output with pyarrow in the driver = NOW"),
]  # fmt: skip
#: measured once, not in the ladder: slower and heavier, or no effect by construction
EXTRA: list[tuple[str, Lever, str | None]] = [
    ("input: driver reads gz with pyarrow, createDataFrame", replace(HEAD, input="driver_arrow"), "+ count/distinct and preview as 2 Spark jobs = HEAD"),
    ("NUMBA_NUM_THREADS=1 in workers", replace(NOW, numba_threads=1), "check output with pyarrow in the driver = NOW"),
]  # fmt: skip

#: the short ladder of quick mode
QUICK_LADDER = [LADDER[i] for i in (4, 6, 7, 8)]


def spark_conf(lever: Lever) -> dict[str, str]:
    conf = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(lever.batch)}
    if lever.numba_threads is not None:
        conf["spark.executorEnv.NUMBA_NUM_THREADS"] = str(lever.numba_threads)
    return conf


def lever_batches(batches, model, features, id_column, k, version, topk, output):
    """The mapInPandas body, with the model source, top-k and output building switchable."""
    warnings.filterwarnings("ignore")
    if model[0] == "broadcast":
        forest = model[1].value
        labels = np.asarray(forest.classes_).astype(object)
    else:
        forest = load_compact(*model[1:])
        labels = forest.classes_.astype(object)
    labels_arrow = pa.array(labels.tolist(), type=pa.string())
    for batch in batches:
        if model[0] == "broadcast":
            proba = forest.predict_proba(batch[features])
        else:
            X = np.ascontiguousarray(batch[features].to_numpy(dtype=np.float32, na_value=np.nan))
            proba = forest.predict_proba(X)
        ids = batch[id_column]
        if topk == "argsort":
            order = np.argsort(-proba, axis=1)[:, :k]
            out = batch[[id_column]].loc[batch.index.repeat(k)].reset_index(drop=True)
            out.columns = ["product_id"]
            out["pred_label"] = labels[order].ravel()
            out["pred_score"] = np.take_along_axis(proba, order, axis=1).ravel().astype(np.float32)
            out["rank"] = np.tile(np.arange(k, dtype=np.int32), len(batch))
            out["model_version"] = np.int32(version)
            yield out
        elif output == "pandas_repeat":
            yield top_k_frame(ids.to_numpy(), proba, labels, k, version)
        else:
            yield top_k_batch(ids, proba, labels_arrow, k, version)


def _check_written(
    client_id: str, path: Path, staging: Path, id_column: str, per_product: int
) -> tuple[int, int, pd.DataFrame]:
    """The "verify=pyarrow" lever as it was before the checks became Spark aggregations:
    (rows, distinct products, preview) of the written parquet, in one streaming pyarrow pass
    in the driver (~10 MB of Arrow buffers plus the rank-0 ids whatever the output size)."""
    keys = [("product_id", "ascending"), ("rank", "ascending")]
    arrow_schema = pa.schema(
        [("product_id", pa.string()), ("pred_label", pa.string()), ("pred_score", pa.float32())]
        + [("rank", pa.int32()), ("model_version", pa.int32())]
    )
    rows, firsts, head = 0, [], arrow_schema.empty_table()
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


def _read_input(spark: Any, lever: Lever, path: Path, header: list[str], id_column: str, tmp: Path):
    if lever.input == "gz":
        return read_products(spark, path, header, id_column)
    if lever.input == "gz_repartition":
        products = read_products(spark, path, header, id_column)
        return products.repartition(default_parallelism(spark))
    if lever.input == "plain_split":
        with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
        return read_products(spark, tmp, header, id_column)
    if lever.input == "driver_arrow":
        types = {h: pa.string() if h == id_column else pa.float64() for h in header}
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        return spark.createDataFrame(table)
    raise ValueError(lever.input)


def run_lever(
    ws: Workspace, cfg: ClientConfig, version: int, spark: Any, lever: Lever, out_dir: Path
) -> dict[str, Any]:
    """One scoring with `lever`, timed from model lookup to checked output (no session start)."""
    path = ws.layout.predict_file(cfg.client_id)
    header = read_header(cfg.client_id, path)
    features = list(cfg.features)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.parent / f"_input-{out_dir.name}"
    tmp_dir.mkdir(exist_ok=True)
    tmp = tmp_dir / "products.csv"  # a file name starting with "_" would be skipped by Spark
    c0, t0 = tree_cpu_seconds(), time.perf_counter()
    forest_bc = None
    if lever.model == "sklearn_broadcast":
        forest = load_sklearn(ws.settings, cfg.model_name, version)
        forest.set_params(n_jobs=1)
        forest_bc = spark.sparkContext.broadcast(forest)
        del forest
        model: tuple[Any, ...] = ("broadcast", forest_bc)
    else:
        load_compact(ws.settings, cfg.model_name, version)  # the driver's fail-fast load
        model = ("compact", ws.settings, cfg.model_name, version)
    scorer = functools.partial(
        lever_batches,
        model=model,
        features=features,
        id_column=cfg.id_column,
        k=cfg.top_k,
        version=version,
        topk=lever.topk,
        output=lever.output,
    )
    products = _read_input(spark, lever, path, header, cfg.id_column, tmp)
    products.select(cfg.id_column, *features).mapInPandas(scorer, OUTPUT_SCHEMA).write.mode(
        "overwrite"
    ).parquet(str(out_dir))
    if lever.verify == "spark":
        written = spark.read.parquet(str(out_dir))
        rows, distinct = written.selectExpr(
            "count(*) AS rows", "count(DISTINCT product_id) AS products"
        ).first()
        written.orderBy("product_id", "rank").limit(10).toPandas()
    elif lever.verify == "pyarrow":
        rows, distinct, _ = _check_written(cfg.client_id, path, out_dir, cfg.id_column, cfg.top_k)
    else:
        rows = pq.ParquetDataset(out_dir).read(columns=["rank"]).num_rows
        distinct = rows // cfg.top_k
    wall = time.perf_counter() - t0
    cpu = tree_cpu_seconds() - c0
    shutil.rmtree(tmp_dir, ignore_errors=True)
    if forest_bc is not None:
        forest_bc.destroy()
    return {
        "lever": asdict(lever),
        "rows": int(distinct),
        "rows_written": int(rows),
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": distinct / wall,
    }
