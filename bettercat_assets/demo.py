"""`bettercat demo`: sample data for every client, then real runs of the code location's
`client_pipeline` job (data -> model -> predictions), one progress line per client, a table.

The runs go through the instance and the code location as the UI launches them, so they show
under the job's Runs, in Jobs and in Overview. Each run's full event log goes to the instance;
the console gets one line per client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRun

from bettercat_assets.code_location_runs import (
    QUIET_IN_PROCESS,
    LoadedJob,
    RunLaunchError,
    failure_summary,
    loaded_job,
    wait_for_run,
)
from bettercat_assets.core.config.clients import ClientRegistry, load_clients
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import default_data_prefix, default_home
from bettercat_assets.core.data.generate import generate_all
from bettercat_assets.partitions import range_tags, valid_ranges

JOB_NAME = "client_pipeline"

Progress = Callable[[str], None]


#: The instance settings `make dev` installs; the demo installs them too if none exist yet.
LOCAL_INSTANCE_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.local.yaml"


def demo_instance() -> DagsterInstance:
    """The persistent instance at $DAGSTER_HOME (set by the Makefile), else one under
    BETTERCAT_HOME; a new one gets `deploy/dagster.local.yaml` (as `make dev` would install)."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_home() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        local = LOCAL_INSTANCE_YAML
        config.write_text(
            local.read_text(encoding="utf-8")
            if local.is_file()
            else "telemetry:\n  enabled: false\n",
            encoding="utf-8",
        )
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def run_ranges(registry: ClientRegistry) -> list[list[str]]:
    """The runs to launch, as a backfill would: ranges of consecutive valid clients, at most
    MAX_CLIENTS_PER_RUN each (an invalid entry ends a range; it is not run)."""
    return valid_ranges(registry.client_ids, lambda client_id: client_id in registry.clients)


def _latest(instance: DagsterInstance, asset: str, client_id: str) -> tuple[str | None, dict]:
    """The run id and metadata of an asset partition's latest materialization."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[client_id]), limit=1
    ).records
    if not records:
        return None, {}
    metadata = records[0].asset_materialization.metadata
    return records[0].run_id, {k: v.value for k, v in metadata.items()}


def summary_row(instance: DagsterInstance, client_id: str, run: DagsterRun) -> dict[str, object]:
    """The table row of one client after its run: ok only if this run wrote its predictions."""
    _, data = _latest(instance, "training_data", client_id)
    _, model = _latest(instance, "registered_model", client_id)
    preds_run, preds = _latest(instance, "category_predictions", client_id)
    return {
        "client": client_id,
        "status": "ok" if preds_run == run.run_id else "FAILED",
        "rows": data.get("rows"),
        "categories": data.get("classes"),
        "top5_accuracy": model.get("top5_accuracy"),
        "gate_metric": model.get("gate_metric"),  # accuracy for clients with <= 5 categories
        "gate_value": model.get(model.get("gate_metric") or "top5_accuracy"),
        "model_version": preds.get("model_version"),
        "champion": model.get("champion_version"),
        "predictions": preds.get("path"),
        "run_id": run.run_id,
    }


def _progress_line(row: Mapping[str, object], seconds: float, failure: str) -> str:
    if row["status"] == "ok":
        top5 = row["top5_accuracy"]
        score = f", top-5 {top5:.3f}" if isinstance(top5, float) else ""
        metric, value = row.get("gate_metric"), row.get("gate_value")
        if metric and metric != "top5_accuracy" and isinstance(value, float):
            score += f", gate judged on {metric} {value:.3f}"
        return (
            f"{row['client']}: done in {seconds:.0f} s: {row['rows']} rows{score}, "
            f"scored with v{row['model_version']} (run {str(row['run_id'])[:8]})"
        )
    return f"{row['client']}: FAILED (run {str(row['run_id'])[:8]}): {failure}"


def launch_all(job: LoadedJob, registry: ClientRegistry, progress: Progress) -> list[dict]:
    """Launch the runs one after the other; one progress line per client as each finishes."""
    instance = job.workspace.instance
    rows = []
    for client_ids in run_ranges(registry):
        started = time.perf_counter()
        run = job.launch(range_tags(client_ids), QUIET_IN_PROCESS)
        progress(f"{', '.join(client_ids)}: run {run.run_id[:8]} of {JOB_NAME} launched")
        run = wait_for_run(instance, run.run_id)
        failure = "" if run.is_success else failure_summary(instance, run.run_id)
        for client_id in client_ids:
            row = summary_row(instance, client_id, run)
            progress(_progress_line(row, time.perf_counter() - started, failure))
            rows.append(row)
    return rows


def invalid_rows(registry: ClientRegistry, progress: Progress) -> list[dict]:
    """Clients whose entry is invalid: not run; one line each naming the problem."""
    rows = []
    for client_id in registry.client_ids:
        if client_id not in registry.clients:
            try:
                registry.get(client_id)
            except BettercatError as exc:
                progress(f"{client_id}: skipped, invalid clients.yaml entry: {exc}")
            rows.append({"client": client_id, "status": "INVALID CONFIG"})
    return rows


def run_demo(
    clients_file: str | None, data_prefix: str | None, seed: int, progress: Progress
) -> int:
    """Materialize every client's partition through the code location; 0 if all succeeded."""
    if clients_file:
        os.environ["BETTERCAT_CLIENTS_FILE"] = clients_file
    if data_prefix:
        os.environ["DATA_PREFIX"] = data_prefix
    registry = load_clients()
    layout = DataLayout(Path(data_prefix) if data_prefix else default_data_prefix())
    progress(f"generating sample data for {len(registry.clients)} clients under {layout.prefix}")
    generate_all(registry.clients.values(), layout, seed)
    instance = demo_instance()
    server_log = Path(instance.root_directory) / "logs" / "demo.log"
    server_log.unlink(missing_ok=True)
    progress(f"starting the code location; its output goes to {server_log}")
    rows = invalid_rows(registry, progress)
    if registry.clients:
        try:
            with loaded_job(instance, JOB_NAME, server_log=server_log) as job:
                rows = launch_all(job, registry, progress) + rows
        except RunLaunchError as exc:
            progress(f"error: {exc} (details in {server_log})")
            return 1
    summary = pd.DataFrame(rows).drop(columns="run_id", errors="ignore")
    print(summary.to_string(index=False, float_format="{:.3f}".format))
    print(f"\nDagster instance: {instance.root_directory}  (make dev to browse)")
    return 0 if summary["status"].eq("ok").all() else 1
