"""The numbers behind the `category_predictions` checks, made where the scores are made.

`CheckStatistic` is the pass statistic (`core/scoring/pass_stats.py`) of the checks: for every
client slice a Spark worker scores, it counts the input rows, hashes the input ids (64-bit, for
duplicates across the whole input, found on the driver) and summarises the output rows the
scorer made from them: rows per product, ranks, scores, model versions and input products
without output rows. A slice in the scorer's own layout (kk rows per input row, in input
order, ranks 0..kk-1) is summarised with a few array operations; any other output goes through
the general per-product aggregation, so a wrong output is described exactly.

Runs in Spark's Python workers: numpy, pandas and pyarrow only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bettercat_assets.core.scoring.pass_stats import ScoredSlice, State

ID_COLUMN = "product_id"
COUNTS = ("input_rows", "rows", "products", "wrong_count", "bad_ranks", "rising_steps", "unscored")
#: examples: the smallest product id meeting the condition (an empty array when none does)
EXAMPLES = ("wrong_example", "bad_rank_example", "unscored_example")


class CheckStatistic:
    """Per-client numbers for the prediction checks (see `prediction_checks.OutputStats`)."""

    name = "checks"

    def observe(self, scored: ScoredSlice) -> State:
        ids = scored.product_ids
        hashes = np.sort(pd.util.hash_array(ids.to_numpy(dtype=object), categorize=False))
        base = {"input_rows": _count(len(ids)), "id_hashes": hashes}
        unique_ids = hashes.size < 2 or bool(np.all(hashes[1:] != hashes[:-1]))
        canonical = unique_ids and _in_scorer_layout(ids, scored.output, scored.rows_per_product)
        if canonical:
            return base | _layout_stats(scored.output, len(ids), scored.rows_per_product)
        return base | _general_stats(ids, scored.output, scored.rows_per_product)

    def merge(self, states: Sequence[State]) -> State:
        merged: State = {name: _count(sum(int(s[name][0]) for s in states)) for name in COUNTS}
        merged["id_hashes"] = np.sort(np.concatenate([s["id_hashes"] for s in states]))
        for name in EXAMPLES:
            merged[name] = _smallest([s[name] for s in states])
        wrong = min(
            (
                (str(s["wrong_example"][0]), int(s["wrong_example_n"][0]))
                for s in states
                if s["wrong_example"].size
            ),
            default=None,
        )
        merged["wrong_example_n"] = np.array([] if wrong is None else [wrong[1]], dtype=np.int64)
        merged["min_score"] = np.array([np.fmin.reduce([s["min_score"][0] for s in states])])
        merged["max_score"] = np.array([np.max([s["max_score"][0] for s in states])])
        merged["max_sum"] = np.array([np.max([s["max_sum"][0] for s in states])])
        merged["versions"] = np.unique(np.concatenate([s["versions"] for s in states]))
        return merged


def _count(value: int) -> np.ndarray:
    return np.array([value], dtype=np.int64)


def _example(value: object | None) -> np.ndarray:
    return np.array([] if value is None else [str(value)], dtype=np.str_)


def _smallest(examples: list[np.ndarray]) -> np.ndarray:
    found = [str(e[0]) for e in examples if e.size]
    return _example(min(found) if found else None)


def _in_scorer_layout(ids: pd.Series, output: pd.DataFrame, kk: int) -> bool:
    """kk rows per input row, in input order, with ranks 0..kk-1."""
    n = len(ids)
    if len(output) != n * kk:
        return False
    rank = output["rank"].to_numpy()
    if n and not np.array_equal(rank.reshape(n, kk), np.broadcast_to(np.arange(kk), (n, kk))):
        return False
    written = pa.array(output[ID_COLUMN], type=pa.string(), from_pandas=True)
    expected = pa.array(ids, type=pa.string(), from_pandas=True).take(np.repeat(np.arange(n), kk))
    if written.null_count or expected.null_count:
        return False
    return n == 0 or bool(pc.all(pc.equal(written, expected)).as_py())


def _score_stats(scores: np.ndarray, sums: np.ndarray, versions: np.ndarray) -> State:
    """Score bounds as Spark orders floats: NaN above every number (min skips it, max returns
    it) and a per-product sum with a NaN is NaN."""
    finite = scores[~np.isnan(scores)]
    return {
        "min_score": np.array([finite.min() if finite.size else np.nan], dtype=np.float64),
        "max_score": np.array([scores.max() if scores.size else np.nan], dtype=np.float64),
        "max_sum": np.array([sums.max() if sums.size else np.nan], dtype=np.float64),
        "versions": np.unique(versions.astype(np.int64)),
    }


def _layout_stats(output: pd.DataFrame, n: int, kk: int) -> State:
    """A slice in the scorer's layout: every product has kk rows with ranks 0..kk-1."""
    scores = output["pred_score"].to_numpy(dtype=np.float32).reshape(n, kk)
    step_up = scores[:, 1:] > scores[:, :-1]  # NaN compares False: a NaN is no rising step
    return {
        "rows": _count(n * kk),
        "products": _count(n),
        "wrong_count": _count(0),
        "bad_ranks": _count(0),
        "rising_steps": _count(int(step_up.sum())),
        "unscored": _count(0),
        "wrong_example": _example(None),
        "wrong_example_n": np.array([], dtype=np.int64),
        "bad_rank_example": _example(None),
        "unscored_example": _example(None),
        **_score_stats(
            scores.ravel(),
            scores.astype(np.float64).sum(axis=1),
            output["model_version"].to_numpy(),
        ),
    }


def _first(condition: np.ndarray, values: np.ndarray):
    """The first value where `condition` holds (products are in id order), else None."""
    hits = np.flatnonzero(condition)
    return values[hits[0]] if hits.size else None


def _general_stats(ids: pd.Series, output: pd.DataFrame, kk: int) -> State:
    """Any output: per product, rows, ranks and scores sorted by (rank, score), NaN last."""
    if output.empty:
        return _layout_stats(output, 0, kk) | _missing(ids, pd.Index([]))
    out_ids = pd.Series(np.asarray(output[ID_COLUMN].to_numpy(dtype=object)), dtype=object)
    codes, products = pd.factorize(out_ids, sort=True)
    rank = output["rank"].to_numpy(np.int64)
    score = output["pred_score"].to_numpy(np.float32)
    order = np.lexsort((score, rank, codes))
    codes, rank, score = codes[order], rank[order], score[order]
    n = np.bincount(codes, minlength=len(products))
    starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.intp)
    same_product = codes[1:] == codes[:-1]
    new_rank = np.concatenate([[True], ~same_product | (rank[1:] != rank[:-1])])
    n_ranks = np.bincount(codes, weights=new_rank, minlength=len(products)).astype(np.int64)
    r_min, r_max = rank[starts], rank[starts + n - 1]
    sums = np.add.reduceat(score.astype(np.float64), starts)
    rising = same_product & ~np.isnan(score[1:]) & ~np.isnan(score[:-1]) & (score[1:] > score[:-1])
    wrong = n != kk
    bad_rank = (r_min != 0) | (r_max != n - 1) | (n_ranks != n)
    names = np.asarray(products, dtype=object)
    wrong_at = _first(wrong, np.arange(len(products)))
    return _missing(ids, products) | {
        "rows": _count(int(n.sum())),
        "products": _count(len(products)),
        "wrong_count": _count(int(wrong.sum())),
        "bad_ranks": _count(int(bad_rank.sum())),
        "rising_steps": _count(int(rising.sum())),
        "wrong_example": _example(None if wrong_at is None else names[wrong_at]),
        "wrong_example_n": np.array([] if wrong_at is None else [n[wrong_at]], dtype=np.int64),
        "bad_rank_example": _example(_first(bad_rank, names)),
        **_score_stats(score, sums, output["model_version"].to_numpy()),
    }


def _missing(ids: pd.Series, products: pd.Index) -> State:
    """Input products without any output row: how many, and the smallest."""
    given = ids.dropna()
    missing = given[~given.isin(products)]
    return {
        "unscored": _count(int(missing.nunique())),
        "unscored_example": _example(missing.min() if not missing.empty else None),
    }
