"""Section 5: many clients. Loading the code location and one sensor tick over 1,000 events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .workspace import Workspace, write_clients_file

GOAL_IMPORT_S = 5.0
GOAL_SENSOR_S = 10.0
SCALE_FEATURES = ["price", "weight_g", "length_cm", "n_reviews", "rating", "is_new"]


def write_many_clients(ws: Workspace, n: int) -> Path:
    entries = [
        {"client_id": f"client_{i:05d}", "features": SCALE_FEATURES, "top_k": 5} for i in range(n)
    ]
    return write_clients_file(ws.root / f"clients_{n}.yaml", entries)


IMPORT_SNIPPET = (
    "import time; t = time.perf_counter(); import bettercat_assets.definitions as d; "
    "print(time.perf_counter() - t, len(d.defs.resolve_all_job_defs()))"
)


LOAD_CLIENTS_SNIPPET = (
    "import time; from bettercat_assets.core.config import load_clients; "
    "t = time.perf_counter(); r = load_clients(); print(time.perf_counter() - t, len(r.clients))"
)


def sensor_tick(n_events: int | None = None) -> dict[str, Any]:
    """Report one champion-changing `registered_model` materialization per partition (or the
    first `n_events`), then time one evaluation of `rescore_on_new_champion`."""
    from dagster import AssetMaterialization, build_multi_asset_sensor_context, instance_for_test

    from bettercat_assets.assets.registered_model import registered_model
    from bettercat_assets.definitions import defs
    from bettercat_assets.partitions import client_partitions
    from bettercat_assets.sensors import rescore_on_new_champion

    keys = client_partitions.get_partition_keys()[: n_events or None]
    with instance_for_test() as instance:
        t0 = time.perf_counter()
        for i, key in enumerate(keys):
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key=registered_model.key,
                    partition=key,
                    metadata={"champion_changed": True, "model_version": i + 1},
                )
            )
        report_s = time.perf_counter() - t0
        context = build_multi_asset_sensor_context(
            monitored_assets=[registered_model.key], instance=instance, definitions=defs
        )
        t0 = time.perf_counter()
        requests = list(rescore_on_new_champion(context))
        tick_s = time.perf_counter() - t0
    return {
        "events": len(keys),
        "report_events_s": report_s,
        "tick_s": tick_s,
        "run_requests": len(requests),
        "distinct_partitions": len({r.partition_key for r in requests}),
    }
