"""The numbers behind the `category_predictions` checks for a small run, on the driver.

`prediction_checks.prediction_stats` computes them with one Spark job; for a run whose inputs
are small, that job's fixed cost (two scans, shuffles and a join, compiled on a cold JVM: a
few seconds) is far above the work. Here the same numbers come from the written parquet and
the decompressed input, read with Arrow and aggregated with numpy. Both give identical stats:
the check tests run every case through both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bettercat_assets.core.scoring.batch_scorer import ID_COLUMN
from bettercat_assets.core.scoring.prediction_checks import InputStats, OutputStats

#: Scoring inputs up to this size (decompressed CSV, all clients of the run) are checked here.
LOCAL_CHECKS_MAX_BYTES = 32 << 20
OUTPUT_COLUMNS = [ID_COLUMN, "pred_score", "rank", "model_version"]


def read_output(client_dir: Path) -> pd.DataFrame:
    """A client's written rows (the columns the checks need); empty if nothing was written."""
    if not client_dir.is_dir():
        return pd.DataFrame({name: [] for name in OUTPUT_COLUMNS})
    return pq.read_table(client_dir, columns=OUTPUT_COLUMNS).to_pandas()


def read_input_ids(plain_csv: Path, id_column: str) -> pd.Series:
    """The id column of a scoring CSV; an empty id is null, as Spark's CSV reader has it."""
    table = pacsv.read_csv(
        plain_csv,
        convert_options=pacsv.ConvertOptions(
            include_columns=[id_column], strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    return table.column(id_column).to_pandas()


def local_prediction_stats(
    outputs: Mapping[str, pd.DataFrame],
    inputs: Mapping[str, pd.Series],
    rows_per_product: Mapping[str, int],
) -> tuple[dict[str, OutputStats], dict[str, InputStats]]:
    """Per-client stats of each client's long output and its input ids (see prediction_stats)."""
    out: dict[str, OutputStats] = {}
    inp: dict[str, InputStats] = {}
    for cid, ids in inputs.items():
        if ids.empty:
            continue  # like a client without input rows in the Spark job: no stats at all
        rows = outputs.get(cid)
        if rows is None or rows.empty:
            inp[cid] = InputStats(len(ids), len(ids), len(ids), None)
            continue
        out[cid], duplicate_rows = _output_stats(rows, int(rows_per_product[cid]))
        distinct = len(ids) - duplicate_rows
        unscored = max(0, distinct - out[cid].products)
        example = _unscored_example(ids, rows[ID_COLUMN]) if unscored else None
        inp[cid] = InputStats(len(ids), distinct, unscored, example)
    return out, inp


def _first(condition: np.ndarray, values: np.ndarray):
    """The first value where `condition` holds (products are in id order), else None."""
    hits = np.flatnonzero(condition)
    return values[hits[0]] if hits.size else None


def _output_stats(rows: pd.DataFrame, kk: int) -> tuple[OutputStats, int]:
    """One client's OutputStats and its duplicate-row count (an input id listed m times)."""
    codes, products = pd.factorize(rows[ID_COLUMN], sort=True)
    rank = rows["rank"].to_numpy(np.int64)
    score = rows["pred_score"].to_numpy(np.float32)
    # Per product, by rank then score: Spark's array_sort of (rank, score), NaN last.
    order = np.lexsort((score, rank, codes))
    codes, rank, score = codes[order], rank[order], score[order]
    n = np.bincount(codes, minlength=len(products))
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    same_product = codes[1:] == codes[:-1]
    new_rank = np.concatenate([[True], ~same_product | (rank[1:] != rank[:-1])])
    n_ranks = np.bincount(codes, weights=new_rank, minlength=len(products)).astype(np.int64)
    r_min, r_max = rank[starts], rank[starts + n - 1]
    score_sum = np.add.reduceat(score.astype(np.float64), starts)  # NaN stays NaN, as in Spark
    rising = same_product & ~np.isnan(score[1:]) & ~np.isnan(score[:-1]) & (score[1:] > score[:-1])
    wrong = n != kk
    bad_rank = (r_min != 0) | (r_max != n - 1) | (n_ranks != n)
    duplicated = (n > kk) & (n % kk == 0) & (n_ranks == kk)
    wrong_example = _first(wrong, np.arange(len(products)))
    finite = score[~np.isnan(score)]
    stats = OutputStats(
        rows=int(n.sum()),
        products=len(products),
        wrong_count=int(wrong.sum()),
        wrong_count_example=None
        if wrong_example is None
        else (str(products[wrong_example]), int(n[wrong_example])),
        bad_ranks=int(bad_rank.sum()),
        bad_ranks_example=_first(bad_rank, np.asarray(products, dtype=object)),
        rising_steps=int(rising.sum()),
        # Spark orders NaN above every number: min skips it, max returns it.
        min_score=float(finite.min()) if finite.size else float("nan"),
        max_score=float(score.max()),
        max_sum=float(score_sum.max()),
        versions=tuple(int(v) for v in np.unique(rows["model_version"].to_numpy(np.int64))),
    )
    return stats, int((n[duplicated] // kk - 1).sum())


def _unscored_example(ids: pd.Series, scored: pd.Series) -> str | None:
    """The smallest input id that has no output row."""
    missing = ids.dropna()[~ids.dropna().isin(scored)]
    return str(missing.min()) if not missing.empty else None
