"""One measurement in a fresh process: `python -m bench.child TASK ARGS.json RESULT.json`.

A fresh process per measurement gives each one its own Spark session (and so its own
Python workers), a clean RSS baseline, and a process tree the parent can sample.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from .workspace import Workspace

DAY = date(2026, 1, 15)


def _client(args: dict[str, Any]):
    from bettercat_assets.core.config.clients import ClientConfig

    return ClientConfig.model_validate(args["client"])


def prepare(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    """Write the bench client's data, train and register its model with `train_model`, and
    export the sklearn model (pickle, for the LIMIT) and the compact model."""
    import pickle

    from bettercat_assets.core.data.loading import load_training_table
    from bettercat_assets.core.model.compact_forest import CompactForest
    from bettercat_assets.core.model.store import load_compact, load_sklearn
    from bettercat_assets.core.training.evaluation import top_k_accuracy
    from bettercat_assets.core.training.split import split_train_test
    from bettercat_assets.core.training.train import train_model

    from .data import write_bench_client

    cfg = _client(args)
    t0 = time.perf_counter()
    data = write_bench_client(
        ws.layout,
        cfg.client_id,
        train_rows=args["train_rows"],
        predict_rows=args["predict_rows"],
        n_features=len(cfg.features),
        n_classes=args["classes"],
        noise=args["noise"],
    )
    data_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trained = train_model(cfg, DAY, layout=ws.layout, settings=ws.settings)
    train_s = time.perf_counter() - t0

    forest = load_sklearn(ws.settings, cfg.model_name, trained.version)
    sk_path = ws.root / "model" / "sklearn_forest.pkl"
    sk_path.parent.mkdir(parents=True, exist_ok=True)
    with open(sk_path, "wb") as fh:
        pickle.dump(forest, fh, protocol=pickle.HIGHEST_PROTOCOL)
    compact = load_compact(ws.settings, cfg.model_name, trained.version)
    compact.save(ws.root / "model" / "compact")

    # the compact model's top-5 on train_model's own test split (must equal sklearn's)
    table = load_training_table(cfg, ws.layout.train_file(cfg.client_id))
    seed = int(cfg.model_params.get("random_state") or 0)
    _, x_test, _, y_test = split_train_test(table, cfg.test_size, seed)
    compact_top5 = top_k_accuracy(
        y_test, compact.predict_proba(x_test.to_numpy(dtype="float32")), compact.classes_, 5
    )
    assert isinstance(compact, CompactForest)
    return {
        "version": trained.version,
        "data_s": data_s,
        "train_model_s": train_s,
        "predict_rows": data.predict_rows,
        "train_rows": data.train_rows,
        "fit_s": trained.metrics["fit_seconds"],
        "top5_sklearn": trained.metrics["top5_accuracy"],
        "top5_compact": compact_top5,
        "sklearn_pickle_mb": sk_path.stat().st_size / 1e6,
        "compact_mb": compact.nbytes / 1e6,
        "nodes": int(sum(e.tree_.node_count for e in forest.estimators_)),
        "champion": trained.champion_version,
    }


def limit(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .throughput import run_limit

    cfg = _client(args)
    model = ws.root / "model" / ("sklearn_forest.pkl" if args["kind"] == "sklearn" else "compact")
    return run_limit(
        ws.layout.predict_file(cfg.client_id),
        model,
        list(cfg.features),
        ws.root / "limit_out",
        kind=args["kind"],
        k=cfg.top_k,
    )


def ours(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .throughput import run_ours, start_spark

    spark, session_s = start_spark()
    out = run_ours(ws, _client(args), DAY, spark, warm_repeat=args.get("warm_repeat", True))
    out["session_s"] = session_s
    return out


def seed(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .throughput import SPARK_DEFAULT_BATCH, run_seed, start_spark

    conf = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(SPARK_DEFAULT_BATCH)}
    spark, session_s = start_spark(conf)
    out = run_seed(ws, _client(args), args["version"], spark, ws.root / "seed_out")
    out["session_s"] = session_s
    return out


def lever(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .levers import Lever, run_lever, spark_conf
    from .throughput import start_spark

    lv = Lever(**args["lever"])
    spark, session_s = start_spark(spark_conf(lv))
    out = run_lever(ws, _client(args), args["version"], spark, lv, ws.root / "lever_out" / "x")
    out["session_s"] = session_s
    return out


def compact_rss(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .footprint import compact_rss as measure

    return measure(ws, _client(args), args["version"])


def variant(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .footprint import fit_variant

    return fit_variant(ws, _client(args), args["override"])


def backfill(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .overhead import run_backfill

    return run_backfill(args["client_ids"])


def fixed_costs(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .overhead import fixed_costs as measure

    return measure(ws)


def sensor(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .scale import sensor_tick

    return sensor_tick(args.get("events"))


def asset_scoring(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    from .scale_out import asset_scoring as run

    return run(ws, args)


TASKS = {
    f.__name__: f
    for f in (
        asset_scoring,
        prepare,
        limit,
        ours,
        seed,
        lever,
        compact_rss,
        variant,
        backfill,
        fixed_costs,
        sensor,
    )
}


def main() -> None:
    task, args_file, result_file = sys.argv[1:4]
    args = json.loads(Path(args_file).read_text())
    ws = Workspace(Path(args["root"]))
    result = TASKS[task](ws, args)
    Path(result_file).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
