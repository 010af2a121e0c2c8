"""Section 9: one client's `category_predictions` through the asset path at 1M and 10M products.

Each size runs in a fresh process (`bench.child asset_scoring`) that materializes the
asset through Dagster's API with the project's resources, as a run worker does; the process
tree is sampled for the peak RSS of the Python driver, the JVM and the Python workers, each on
its own. Marginal throughput compares products per second of the scoring stage (Spark job plus
checks plus swap, from the run's own timings) at both sizes.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from .data import DEFAULT_NOISE, write_predict_file
from .workspace import Workspace, write_clients_file

SIZES = (1_000_000, 10_000_000)
GOAL_DRIVER_MB = 1536
GOAL_DRIVER_GROWTH = 0.20
GOAL_THROUGHPUT_DROP = 0.15
DAY = date(2026, 12, 1)


def asset_scoring(ws: Workspace, args: dict[str, Any]) -> dict[str, Any]:
    """Child task: materialize `category_predictions` for one client through Dagster."""
    import dagster as dg

    from bettercat_assets.assets import CATEGORY_PREDICTIONS
    from bettercat_assets.assets.client_assets import build_client_assets
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.definitions import build_resources
    from bettercat_assets.partitions import client_partitions

    assets = build_client_assets(client_partitions(load_clients(ws.clients_file)))
    timings: dict[str, float] = {}
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    result = dg.materialize(
        [assets],
        selection=[CATEGORY_PREDICTIONS],
        partition_key=args["client_id"],
        resources=build_resources(ws.clients_file),
        instance=instance,
        run_config={"ops": {"client_assets": {"config": {"day": DAY.isoformat()}}}},
    )
    wall = time.perf_counter() - started
    for entry in instance.all_logs(result.run_id):
        message = entry.user_message or ""
        if "scored 1 client(s):" in message:
            for part in message.split("scored 1 client(s):", 1)[1].split(","):
                name, seconds = part.strip().rsplit(" ", 2)[:2]
                timings[name] = float(seconds)
    (mat,) = result.asset_materializations_for_node("client_assets")
    return {
        "products": int(mat.metadata["products_scored"].value),
        "rows": int(mat.metadata["rows_written"].value),
        "materialize_s": wall,
        "timings": timings,
    }


def run_scale_out(ws: Workspace, cfg_json: dict, child) -> dict[str, Any]:
    """Score the prepared bench client at each size; peak RSS per kind and throughput."""
    client_id = cfg_json["client_id"]
    write_clients_file(ws.clients_file, [{k: cfg_json[k] for k in ("client_id", "features")}])
    runs = []
    marker = ws.root / "scale_out_rows.txt"  # rows of the current scoring file
    for products in sorted(
        SIZES, reverse=marker.exists() and marker.read_text() == str(max(SIZES))
    ):
        if not marker.exists() or marker.read_text() != str(products):
            write_predict_file(
                ws.layout, client_id, products, len(cfg_json["features"]), 100, DEFAULT_NOISE
            )
            marker.write_text(str(products))
        out = child(ws, "asset_scoring", {"client_id": client_id}, timeout=3 * 3600)
        stage = sum(out["timings"].get(k, 0.0) for k in ("score_and_write", "checks", "swap_in"))
        runs.append(
            {
                **out,
                "stage_s": stage,
                "products_per_s": out["products"] / out["materialize_s"],
                "peak_by_kind_mb": out["_proc"]["peak_by_kind_mb"],
                "peak_rss_mb": out["_proc"]["peak_rss_mb"],
            }
        )
    return {"runs": sorted(runs, key=lambda r: r["products"])}
