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


#: Loading the code location as Dagster does: import the module, then build its `Definitions`
#: (`defs` is a lazy `@dg.definitions` loader, so the import alone reads no clients file).
IMPORT_SNIPPET = (
    "import time; t = time.perf_counter(); import bettercat_assets.definitions as d; "
    "defs = d.build_definitions(); "
    "print(time.perf_counter() - t, len(defs.resolve_all_job_defs()))"
)


LOAD_CLIENTS_SNIPPET = (
    "import time; from bettercat_assets.core.config.clients import load_clients; "
    "t = time.perf_counter(); r = load_clients(); print(time.perf_counter() - t, len(r.clients))"
)


def sensor_tick(n_events: int | None = None) -> dict[str, Any]:
    """Report one champion-changing `registered_model` materialization per partition (or the
    first `n_events`), then time one evaluation of the re-scoring automation condition, as the
    `rescore_on_new_champion` automation sensor runs it."""
    from dagster import (
        AssetKey,
        AssetMaterialization,
        AssetSelection,
        evaluate_automation_conditions,
        instance_for_test,
    )

    from bettercat_assets.definitions import build_definitions

    defs = build_definitions()
    target = AssetSelection.assets("category_predictions")
    predictions = AssetKey("category_predictions")
    partitions = defs.resolve_job_def("client_pipeline").partitions_def
    keys = partitions.get_partition_keys()[: n_events or None]
    with instance_for_test() as instance:
        # The sensor's first tick only sets its cursor; the events below come after it.
        cursor = evaluate_automation_conditions(defs, instance, target).cursor
        t0 = time.perf_counter()
        for i, key in enumerate(keys):
            instance.report_runless_asset_event(
                AssetMaterialization(
                    asset_key="registered_model",
                    partition=key,
                    metadata={"champion_changed": True, "model_version": i + 1},
                )
            )
        report_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = evaluate_automation_conditions(defs, instance, target, cursor=cursor)
        tick_s = time.perf_counter() - t0
    requested = result.get_requested_partitions(predictions)
    return {
        "events": len(keys),
        "report_events_s": report_s,
        "tick_s": tick_s,
        "run_requests": result.get_num_requested(predictions),
        "distinct_partitions": len(requested),
    }
