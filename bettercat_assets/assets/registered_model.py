"""`registered_model`: train, track and register a client's model; promote it if it passes."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from bettercat_assets.assets import CODE_VERSION, GROUP, OWNERS, TRANSIENT_RETRY
from bettercat_assets.assets.run_config import DatedRunConfig
from bettercat_assets.assets.training_data import training_data
from bettercat_assets.checks import check_specs
from bettercat_assets.core.errors import BettercatError
from bettercat_assets.core.evaluation import WeakestCategories, gate_check_metadata
from bettercat_assets.core.rounding import round_metrics
from bettercat_assets.core.training import TrainingResult, train_model
from bettercat_assets.partitions import client_partitions
from bettercat_assets.resources import ClientsResource, MlflowResource

QUALITY_GATE = "quality_gate"


def model_metadata(result: TrainingResult) -> dict[str, object]:
    """Materialization metadata; `champion_version`/`champion_changed` drive re-scoring.

    Metrics are rounded (`core/rounding.py`); `champion_version` is left out while the client
    has no champion at all.
    """
    weakest = WeakestCategories(result.weakest_categories, result.weakest_summary)
    champion = result.champion_version
    return {
        "mlflow_run": MetadataValue.url(result.run_url),
        "model_version_url": MetadataValue.url(result.model_url),
        "model_name": result.model_name,
        "model_version": MetadataValue.int(result.version),
        **({"champion_version": MetadataValue.int(champion)} if champion is not None else {}),
        "champion_changed": MetadataValue.bool(result.champion_changed),
        "gate": result.gate.reason,
        "training_data_sha256": result.data_fingerprint,
        **{k: MetadataValue.float(v) for k, v in sorted(round_metrics(result.metrics).items())},
        "weakest_categories": MetadataValue.md(weakest.markdown()),
    }


@asset(
    partitions_def=client_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"scikitlearn", "mlflow"},
    code_version=CODE_VERSION,
    deps=[training_data],
    retry_policy=TRANSIENT_RETRY,
    description="A RandomForest trained on the client's data, logged to the client's MLflow "
    "experiment and registered as `<client_id>_model`. It becomes `@champion` only if the "
    "blocking quality gate passes.",
    check_specs=check_specs(
        "registered_model",
        {
            QUALITY_GATE: "Top-5 accuracy meets the client's floor and is not worse than the "
            "champion's on the same test split by more than the tolerance."
        },
        blocking=True,
    ),
)
def registered_model(
    context: AssetExecutionContext,
    config: DatedRunConfig,
    clients: ClientsResource,
    mlflow: MlflowResource,
) -> MaterializeResult:
    client_id = context.partition_key
    run_id = context.run.run_id
    try:
        cfg = clients.client(client_id)
        day = config.resolved_day()
        result = train_model(
            cfg,
            day,
            layout=clients.layout,
            settings=mlflow.settings,
            run_name=mlflow.run_name(client_id, day, run_id),
            extra_tags=mlflow.run_tags(client_id, run_id),
            progress=context.log.info,
        )
    except BettercatError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    gate = result.gate
    return MaterializeResult(
        metadata=model_metadata(result),
        data_version=DataVersion(f"v{result.version}"),
        check_results=[
            AssetCheckResult(
                check_name=QUALITY_GATE,
                passed=gate.passed,
                severity=AssetCheckSeverity.ERROR,
                description=f"client '{client_id}' v{result.version}: {gate.reason}",
                metadata=gate_check_metadata(gate),
            )
        ],
    )
