"""`client_fleet`: one unpartitioned asset ranking every client by how much it needs attention.

Materialized after scoring (declarative automation: once any client's `category_predictions`
was updated and nothing is in progress). The ranking is a table in the asset's metadata and
`products_categories/_fleet/fleet.parquet`; `bettercat fleet` prints the same ranking.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from bettercat_assets.assets import (
    CATEGORY_PREDICTIONS,
    GROUP,
    OWNERS,
    REGISTERED_MODEL,
    TRAINING_DATA,
)
from bettercat_assets.core.monitoring.fleet import FLEET_FILE, fleet_table, write_fleet
from bettercat_assets.resources import ClientsResource, MlflowResource

CLIENT_FLEET = AssetKey("client_fleet")
#: Rows of the metadata table (the Parquet file has every client).
TABLE_ROWS = 100
AFTER_SCORING = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after any client was scored")


def failed_clients(context: AssetExecutionContext, partitions: PartitionsDefinition) -> set[str]:
    """Clients whose latest run of any stage failed, as Dagster records it."""
    keys = partitions.get_partition_keys(dynamic_partitions_store=context.instance)
    failed: set[str] = set()
    for stage in (TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS):
        status = context.instance.get_status_by_partition(stage, keys, partitions) or {}
        failed |= {k for k, s in status.items() if s is not None and s.value == "FAILED"}
    return failed


def _table(frame) -> MetadataValue:
    columns = [TableColumn(str(c), "string") for c in frame.columns]
    records = [
        TableRecord({str(k): "" if v is None or v != v else str(v) for k, v in row.items()})
        for row in frame.head(TABLE_ROWS).to_dict("records")
    ]
    return MetadataValue.table(records, schema=TableSchema(columns))


def build_fleet_asset(partitions: PartitionsDefinition):
    @asset(
        key=CLIENT_FLEET,
        deps=[CATEGORY_PREDICTIONS],
        group_name=GROUP,
        owners=OWNERS,
        kinds={"parquet"},
        automation_condition=AFTER_SCORING,
        description="Every client ranked by how much it needs attention, and why: last run "
        "failed, no champion, repeated gate failures, estimated accuracy drop, prediction or "
        "input drift, stale predictions (docs/monitoring.md).",
    )
    def client_fleet(
        context: AssetExecutionContext, clients: ClientsResource, mlflow: MlflowResource
    ) -> MaterializeResult:
        layout = clients.layout
        frame = fleet_table(
            clients.registry().clients, layout, mlflow.settings, failed_clients(context, partitions)
        )
        path = write_fleet(frame, layout.prefix / "products_categories" / "_fleet" / FLEET_FILE)
        needing = int((frame["attention"] > 0).sum()) if not frame.empty else 0
        return MaterializeResult(
            metadata={
                "clients": MetadataValue.int(len(frame)),
                "needing_attention": MetadataValue.int(needing),
                "ranking": _table(frame),
                "path": MetadataValue.path(str(path)),
            }
        )

    return client_fleet
