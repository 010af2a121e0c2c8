"""`bettercat demo`: sample data for every client, then each client's partition through Dagster."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterInstance

from bettercat_assets.core.config import load_clients
from bettercat_assets.core.generate import generate_all
from bettercat_assets.core.paths import DataLayout
from bettercat_assets.core.settings import default_data_prefix, default_home


def _instance() -> DagsterInstance:
    """The persistent instance at $DAGSTER_HOME (set by the Makefile), else one under BETTERCAT_HOME."""
    import os

    home = Path(os.environ.get("DAGSTER_HOME") or default_home() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _latest_metadata(instance: DagsterInstance, asset: str, client_id: str) -> dict[str, object]:
    from dagster import AssetRecordsFilter

    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[client_id]), limit=1
    ).records
    if not records:
        return {}
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def run_demo(
    clients_file: str | None, data_prefix: str | None, seed: int, progress: Callable[[str], None]
) -> int:
    """Materialize every client's partition (data -> model -> predictions); 0 if all succeeded."""
    import os

    if clients_file:
        os.environ["BETTERCAT_CLIENTS_FILE"] = clients_file
    if data_prefix:
        os.environ["DATA_PREFIX"] = data_prefix
    registry = load_clients()
    layout = DataLayout(Path(data_prefix) if data_prefix else default_data_prefix())
    progress(f"generating sample data for {len(registry.client_ids)} clients under {layout.prefix}")
    generate_all(registry.clients.values(), layout, seed)

    from bettercat_assets.definitions import defs

    job = defs.resolve_job_def("client_pipeline")
    instance = _instance()
    rows = []
    for client_id in registry.client_ids:
        progress(
            f"{client_id}: materializing training_data -> registered_model -> category_predictions"
        )
        result = job.execute_in_process(
            partition_key=client_id, instance=instance, raise_on_error=False
        )
        data = _latest_metadata(instance, "training_data", client_id)
        model = _latest_metadata(instance, "registered_model", client_id)
        preds = _latest_metadata(instance, "category_predictions", client_id)
        rows.append(
            {
                "client": client_id,
                "status": "ok" if result.success else "FAILED",
                "rows": data.get("rows"),
                "categories": data.get("classes"),
                "top5_accuracy": model.get("top5_accuracy"),
                "model_version": preds.get("model_version"),
                "champion": model.get("champion_version"),
                "predictions": preds.get("path"),
            }
        )
    summary = pd.DataFrame(rows)
    print(summary.to_string(index=False, float_format="{:.3f}".format))
    print(f"\nDagster instance: {instance.root_directory}  (make dev to browse)")
    return 0 if summary["status"].eq("ok").all() else 1
