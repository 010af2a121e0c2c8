"""Wrong outputs injected into a real scoring pass, one kind per client, for classic Spark
(test_pass_checks.py) and Spark Connect (test_spark_connect.py).

The injection rewrites a client's scored rows inside the Spark workers, before the pass
summarises and writes them (`batch_scorer.score_batches(transform=...)`): what the checks see is
exactly what is written. This module is pickled by value, so workers need not import it.
"""

from __future__ import annotations

import functools
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])

DAY = date(2026, 3, 4)
GOOD = "echo"
#: client -> (what is wrong with its output, the checks that must fail)
DEFECTS: dict[str, tuple[str, set[str]]] = {
    "foxtrot": ("nan_score", {"score_bounds"}),
    "golf": ("missing_product", {"all_products_scored"}),
    "india": ("duplicated_product", {"rows_per_product", "rank_order", "score_bounds"}),
    "juliet": ("wrong_row_count", {"rows_per_product"}),
}
CLIENTS = (GOOD, *DEFECTS)


def _first_product(out: pd.DataFrame) -> pd.Series:
    return out["product_id"] == out["product_id"].iloc[0]


def _one_chunk(frame: pd.DataFrame) -> pd.DataFrame:
    """Arrow-backed columns as single arrays again, as the scorer makes them."""
    return frame.assign(
        **{
            name: pd.arrays.ArrowExtensionArray(
                pa.chunked_array(column.array._pa_array).combine_chunks()
            )
            for name, column in frame.items()
            if isinstance(column.dtype, pd.ArrowDtype)
        }
    )


def tamper(client_id: str, out: pd.DataFrame) -> pd.DataFrame:
    """The client's defect applied to the first product of each slice it has."""
    kind = DEFECTS.get(client_id, ("none", set()))[0]
    if out.empty or kind == "none":
        return out
    return _one_chunk(_defect(kind, out))


def _defect(kind: str, out: pd.DataFrame) -> pd.DataFrame:
    first = _first_product(out)
    if kind == "nan_score":
        scores = out["pred_score"].to_numpy(dtype=np.float32).copy()
        scores[np.flatnonzero(first)[-1]] = np.nan
        return out.assign(pred_score=pd.arrays.ArrowExtensionArray(pa.array(scores)))
    if kind == "missing_product":
        return out[~first].reset_index(drop=True)
    if kind == "duplicated_product":
        return pd.concat([out, out[first]], ignore_index=True)
    if kind == "wrong_row_count":
        return out.drop(index=np.flatnonzero(first)[-1]).reset_index(drop=True)
    raise ValueError(kind)


class Top1Counts:
    """A statistic from outside the scoring package (as monitoring adds its own): products per
    top-1 class, folded in the same pass and returned merged per client."""

    name = "top1_counts"

    def observe(self, scored):
        top1 = scored.proba.argmax(axis=1)
        return {"counts": np.bincount(top1, minlength=scored.proba.shape[1]).astype(np.int64)}

    def merge(self, states):
        return {"counts": np.sum([s["counts"] for s in states], axis=0)}


def train_clients(registry, layout, tracking_settings) -> None:
    from bettercat_assets.core.training.train import train_model

    for cid in CLIENTS:
        train_model(registry.get(cid), DAY, layout=layout, settings=tracking_settings)


def score_with_defects(spark, registry, layout, tracking_settings, monkeypatch):
    """Score every client in one shared pass with `tamper` injected; client -> result."""
    from bettercat_assets.core.scoring import shared_pass
    from bettercat_assets.core.scoring.spark_pass import ScoringRequest, score_clients

    monkeypatch.setattr(
        shared_pass, "scorer_for", functools.partial(shared_pass.scorer_for, transform=tamper)
    )
    return score_clients(
        [ScoringRequest(registry.get(cid)) for cid in CLIENTS],
        DAY,
        spark=spark,
        layout=layout,
        settings=tracking_settings,
        statistics=[Top1Counts()],
    )


def assert_each_defect_fails_its_client_only(results) -> None:
    """The good client passes every check; each other fails exactly its defect's checks."""
    from bettercat_assets.core.data.quality import PREDICTION_CHECKS

    for cid, result in results.items():
        assert not isinstance(result, BaseException), (cid, result)
        assert {c.name for c in result.checks} == set(PREDICTION_CHECKS), cid
        failed = {c.name for c in result.checks if not c.passed}
        expected = DEFECTS.get(cid, ("none", set()))[1]
        assert failed == expected, (cid, {c.name: c.description for c in result.checks})
        counts = result.pass_stats[Top1Counts.name]["counts"]
        assert counts.sum() == result.pass_stats["checks"]["input_rows"][0], cid


def main(argv: list[str]) -> None:
    """`python -m bettercat_assets_tests.pass_checks_support URL CLIENTS DATA TRACKING ARTIFACTS`:
    the injected pass through the Spark Connect server at URL, in a process of its own (pyspark
    refuses a remote session beside a classic one); prints client -> failed checks as JSON."""
    import json

    import pytest
    from pyspark.sql import SparkSession

    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.spark.session import is_connect

    url, clients_file, data, tracking_uri, artifacts = argv
    spark = SparkSession.builder.remote(url).getOrCreate()
    assert is_connect(spark)
    settings = TrackingSettings(tracking_uri=tracking_uri, artifact_root=artifacts)
    with pytest.MonkeyPatch.context() as monkeypatch:
        results = score_with_defects(
            spark, load_clients(clients_file), DataLayout(Path(data)), settings, monkeypatch
        )
    assert_each_defect_fails_its_client_only(results)
    print(
        json.dumps(
            {cid: sorted(c.name for c in r.checks if not c.passed) for cid, r in results.items()}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
