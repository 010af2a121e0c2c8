"""The bench's code paths on tiny sizes, in-process, so `make bench` cannot rot unnoticed.

Correctness only, no timing: LIMIT, OURS, SEED and a lever step must write the same top-k
for the same model, and the report must render from their results.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.integration

DAY = date(2026, 2, 1)
NO_PROC = {"peak_rss_mb": 0.0, "peak_by_kind_mb": {}, "other_cores": 0.0, "cpu_s": 0.0}


def _top1(out_dir):
    table = ds.dataset(out_dir, format="parquet").to_table().to_pandas()
    first = table[table["rank"] == 0].set_index("product_id").sort_index()
    return table, first


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The bench's `prepare` step at tiny size: data, train_model, exported models."""
    from bench import child
    from bench.data import feature_names
    from bench.workspace import Workspace, bench_client

    ws = Workspace(tmp_path_factory.mktemp("bench") / "ws")
    cfg = bench_client("bench_smoke", feature_names(4), {"n_estimators": 5, "n_jobs": 1})
    prep = child.prepare(
        ws,
        {
            "client": cfg.model_dump(mode="json"),
            "train_rows": 500,
            "predict_rows": 300,
            "classes": 6,
            "noise": 1.0,
        },
    )
    return ws, cfg, prep


def test_bench_smallest_path(prepared, spark):
    from bench import footprint, run, scale
    from bench.levers import HEAD, run_lever
    from bench.throughput import run_limit, run_ours, run_seed

    ws, cfg, prep = prepared
    assert prep["version"] == 1 and prep["predict_rows"] == 300
    assert prep["top5_compact"] == pytest.approx(prep["top5_sklearn"])
    version, features = prep["version"], list(cfg.features)

    predict_file = ws.layout.predict_file(cfg.client_id)
    limit = run_limit(
        predict_file, ws.root / "model" / "sklearn_forest.pkl", features, ws.root / "limit"
    )
    limit_c = run_limit(
        predict_file, ws.root / "model" / "compact", features, ws.root / "limit_c", kind="compact"
    )
    ours = run_ours(ws, cfg, DAY, spark, warm_repeat=False)
    seed = run_seed(ws, cfg, version, spark, ws.root / "seed")
    lever = run_lever(ws, cfg, version, spark, HEAD, ws.root / "lever" / "x")
    assert limit["rows"] == limit_c["rows"] == ours["rows"] == seed["rows"] == lever["rows"] == 300
    assert ours["rows_written"] == 300 * 5

    # the same model gives the same best category and score on every path
    _, ref = _top1(ws.layout.predictions_dir(cfg.client_id, DAY))
    for out in ["limit", "limit_c", "seed", "lever/x"]:
        table, first = _top1(ws.root / out)
        assert len(table) == 1500 and list(first.index) == list(ref.index), out
        np.testing.assert_allclose(first["pred_score"], ref["pred_score"], atol=1e-6)
        assert (first["pred_label"] == ref["pred_label"]).mean() > 0.95, out

    rss = footprint.compact_rss(ws, cfg, version)
    assert rss["nbytes_mb"] > 0 and rss["n_trees"] == 5
    variant = footprint.fit_variant(ws, cfg, {"max_leaf_nodes": 8})
    assert variant["nodes"] <= 5 * 15 and variant["sklearn_pickle_mb"] > variant["compact_mb"]

    tick = scale.sensor_tick(n_events=3)  # the test suite's clients file
    assert tick["run_requests"] == tick["distinct_partitions"] == 3

    proc = {"_proc": NO_PROC}
    results = {
        "mode": "tiny",
        "sizes": {"products": 300},
        "machine": {"nproc": 2},
        "prepare": prep,
        "scoring": {
            "limit_sklearn": {**limit, **proc},
            "limit_compact": {**limit_c, **proc},
            "ours": {**ours, "session_s": 1.0, **proc},
            "seed": {**seed, **proc},
        },
        "levers": [{"name": "HEAD", "against": None, **lever, **proc}],
        "footprint": {"compact_rss": rss, "max_leaf_nodes=300": variant},
        "scale": {
            "clients": 10,
            "import_definitions_s": 1.0,
            "process_wall_s": 2.0,
            "sensor": tick,
        },
    }
    text = run.render(results)
    for needle in [
        "ours / limit (sklearn)",
        "peak RSS",
        "top-5 accuracy",
        "sensor tick",
        "| HEAD |",
    ]:
        assert needle in text, needle


def test_scoring_fast_path_still_rejects_bad_input(prepared, spark):
    """The driver-side decompression and the Spark output checks keep scoring's error contract:
    duplicates, malformed rows and broken gzip fail naming the input, and leave nothing (neither
    beside the client's outputs nor in the shared scoring scratch area)."""
    import gzip

    from bettercat_assets.core.config.errors import DataError
    from bettercat_assets.core.scoring.spark_pass import predict_categories

    ws, cfg, _ = prepared
    path = ws.layout.predict_file(cfg.client_id)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    bad_value = lines[7].rsplit(",", 1)[0] + ",abc"
    cases = {
        "duplicate values": [*lines, lines[5]],
        "must be numeric; line 8": [*lines[:7], bad_value, *lines[8:]],
        "malformed CSV": [*lines[:7], lines[7] + ",1.5", *lines[8:]],
    }
    day = date(2026, 3, 1)
    out_root = ws.layout.predictions_root(cfg.client_id)
    try:
        for message, rows in cases.items():
            path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
            with pytest.raises(DataError, match=message) as err:
                predict_categories(cfg, day, spark=spark, layout=ws.layout, settings=ws.settings)
            assert str(path) in str(err.value)
        path.write_bytes(gzip.compress("\n".join(lines).encode())[:-40])
        with pytest.raises(DataError, match="cannot read gzip"):
            predict_categories(cfg, day, spark=spark, layout=ws.layout, settings=ws.settings)
        made = out_root.iterdir() if out_root.exists() else []  # none when run alone
        leftovers = [p.name for p in made if p.name.startswith("_")]
        assert leftovers == [] and not ws.layout.predictions_dir(cfg.client_id, day).exists()
        scratch = ws.layout.scoring_workdir(day, "x").parent
        assert [p.name for p in scratch.iterdir() if p.name.startswith("_")] == []

        path.write_bytes(gzip.compress((lines[0] + "\n").encode()))  # header only
        with pytest.raises(DataError, match="no data rows"):
            predict_categories(cfg, day, spark=spark, layout=ws.layout, settings=ws.settings)
    finally:
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
