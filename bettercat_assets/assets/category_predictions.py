"""`category_predictions`: top-k categories per product from the client's champion, as parquet."""

import pyarrow.dataset as ds
from dagster import (
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from bettercat_assets.assets import CODE_VERSION, GROUP, OWNERS, TRANSIENT_RETRY
from bettercat_assets.assets.registered_model import registered_model
from bettercat_assets.assets.run_config import DatedRunConfig
from bettercat_assets.checks import check_specs, to_check_result
from bettercat_assets.core import tracking
from bettercat_assets.core.data import load_scoring_table
from bettercat_assets.core.errors import BettercatError
from bettercat_assets.core.model_store import load_compact
from bettercat_assets.core.quality import PREDICTION_CHECKS, prediction_outcomes
from bettercat_assets.core.scoring import predict_categories
from bettercat_assets.partitions import client_partitions
from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource


@asset(
    partitions_def=client_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"spark", "parquet"},
    code_version=CODE_VERSION,
    deps=[registered_model],
    retry_policy=TRANSIENT_RETRY,
    description="Top-k categories per product (`product_id`, `pred_label`, `pred_score`, `rank`, "
    "`model_version`), scored by the client's `@champion` with Spark `mapInPandas` and written "
    "to `products_categories/client_id=<id>/date=<day>/`.",
    check_specs=check_specs("category_predictions", PREDICTION_CHECKS, blocking=False),
)
def category_predictions(
    context: AssetExecutionContext,
    config: DatedRunConfig,
    clients: ClientsResource,
    mlflow: MlflowResource,
    spark: SparkResource,
) -> MaterializeResult:
    client_id = context.partition_key
    try:
        cfg = clients.client(client_id)
        result = predict_categories(
            cfg,
            config.resolved_day(),
            spark=spark.spark_session,
            layout=clients.layout,
            settings=mlflow.settings,
            extra_lineage={"dagster_run_id": context.run.run_id},
        )
        forest = load_compact(mlflow.settings, cfg.model_name, result.model_version)
        inputs = load_scoring_table(
            cfg, clients.layout.predict_file(client_id), [str(f) for f in forest.feature_names]
        )[cfg.id_column]
    except BettercatError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    predictions = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()
    champion = tracking.champion_version(tracking.mlflow_client(mlflow.settings), cfg.model_name)
    outcomes = prediction_outcomes(
        predictions,
        inputs,
        n_classes=len(forest.classes_),
        k=cfg.top_k,
        champion_version=int(champion.version) if champion else None,
    )
    return MaterializeResult(
        metadata={
            "rows_written": MetadataValue.int(result.rows_written),
            "products_scored": MetadataValue.int(result.products_scored),
            "model_version": MetadataValue.int(result.model_version),
            "model_run_id": result.run_id or "",
            "path": MetadataValue.path(str(result.output_dir)),
            "preview": MetadataValue.md(result.preview.to_markdown(index=False)),
        },
        data_version=DataVersion(f"v{result.model_version}-{result.output_dir.name}"),
        check_results=[to_check_result(o) for o in outcomes],
    )
