"""Section `tenants`: "Materialize all" through `dagster dev` for many tiny clients.

The path a user takes: `dagster dev` (webserver + daemon) with the project's own
`deploy/dagster.local.yaml`, a partition backfill of all three assets over every client sent
through GraphQL as the UI sends it, then waiting until no run is queued or running. Reports
wall time per client, runs launched, failed runs, clients scored more than once, and the peak
RSS of Spark's Python workers against an idle Python with pandas, pyarrow, sklearn and mlflow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bettercat_assets_tests.dagster_dev_support import (
    Workspace,
    failed_runs,
    materialize_all,
    start_dagster_dev,
    times_materialized,
    tiny_clients,
    wait_until_idle,
    write_clients,
)
from bettercat_assets_tests.process_support import stop_all

from .workers import WorkerSampler, baseline_rss_mb

#: Goal: wall time per client through the daemon.
GOAL_S_PER_CLIENT = 3.0
#: Measured before range runs (bench/RESULTS.md history): 10 clients in 911 s.
BEFORE_S_PER_CLIENT = 91.1
TIMEOUT_S = 60 * 60


def run_tenants(n_clients: int, root: Path) -> dict[str, Any]:
    """Materialize all for `n_clients` tiny generated clients through `dagster dev`."""
    ws = Workspace(root / f"tenants-{n_clients}")
    client_ids = write_clients(ws, tiny_clients(n_clients))
    url, proc = start_dagster_dev(ws)
    try:
        with WorkerSampler() as workers:
            launched = time.time()
            materialize_all(url, client_ids)
            found = wait_until_idle(url, TIMEOUT_S, processes=[proc])
        finished = max(r["endTime"] or launched for r in found)
        scored = times_materialized(url, "category_predictions")
    finally:
        stop_all([proc])
    wall = finished - launched
    return {
        "clients": n_clients,
        "wall_s": round(wall, 1),
        "per_client_s": round(wall / n_clients, 2),
        "runs": len(found),
        "failed_runs": len(failed_runs(found)),
        "scored_more_than_once": sum(1 for c in client_ids if scored.get(c, 0) > 1),
        "not_scored": sum(1 for c in client_ids if scored.get(c, 0) == 0),
        **workers.as_dict(baseline_rss_mb()),
    }
