"""`registered_model`: train, track and register a client's model; it is materialized when the
new version passes the quality gate and becomes `@champion`.

A version that fails the gate is still registered in MLflow (as a challenger, tagged with the
gate's verdict), but the client's partition fails with the gate's reason: the asset's latest
materialization is always the model behind `@champion`, which is what scoring uses.
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import AssetSpec, MetadataValue, PartitionsDefinition

from bettercat_assets.assets import CODE_VERSION, GROUP, OWNERS, REGISTERED_MODEL, TRAINING_DATA
from bettercat_assets.assets.outcomes import ClientOutcome
from bettercat_assets.assets.retrain import RETRAIN_ON_DRIFT
from bettercat_assets.checks import check_specs
from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.rounding import round_metrics
from bettercat_assets.core.data.quality import CheckOutcome
from bettercat_assets.core.training.evaluation import WeakestCategories
from bettercat_assets.core.training.gate import GateResult, gate_check_metadata
from bettercat_assets.core.training.train import TrainingResult, train_model

QUALITY_GATE = "quality_gate"


def registered_model_spec(partitions: PartitionsDefinition) -> AssetSpec:
    return AssetSpec(
        REGISTERED_MODEL,
        deps=[TRAINING_DATA],
        partitions_def=partitions,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"scikitlearn", "mlflow"},
        code_version=CODE_VERSION,
        skippable=True,
        automation_condition=RETRAIN_ON_DRIFT,
        description="A RandomForest trained on the client's data, logged to the client's MLflow "
        "experiment and registered as <client_id>_model. Materialized when the new version "
        "passes the blocking quality gate and becomes @champion.",
    )


def registered_model_checks(partitions: PartitionsDefinition):
    descriptions = {
        QUALITY_GATE: "Top-5 accuracy meets the client's floor, beats the class-prior baseline "
        "and is not worse than the champion's on the same test split (the rows the champion was "
        "not fit on) by more than the tolerance. "
        "A client with at most 5 categories, whose top-5 accuracy is always 1.0, is judged on "
        "top-1 accuracy: it must beat the most-frequent-category baseline beyond chance and not "
        "fall behind the champion. The metadata names the metric that judged."
    }
    return check_specs("registered_model", descriptions, blocking=True, partitions_def=partitions)


def model_metadata(result: TrainingResult) -> dict[str, object]:
    """Materialization metadata: links to MLflow, the version, the gate (and the metric that
    judged it) and the metrics.

    Metrics are rounded (`core/config/rounding.py`), counts are integers; `champion_version` is
    left out while the client has no champion at all.
    """
    weakest = WeakestCategories(result.weakest_categories, result.weakest_summary)
    champion = result.champion_version
    return {
        "mlflow_run": MetadataValue.url(result.run_url),
        "mlflow_runs": MetadataValue.url(result.runs_url),
        "model_version_url": MetadataValue.url(result.model_url),
        "model_name": result.model_name,
        "model_version": MetadataValue.int(result.version),
        **({"champion_version": MetadataValue.int(champion)} if champion is not None else {}),
        "champion_changed": MetadataValue.bool(result.champion_changed),
        "gate": result.gate.reason,
        "gate_metric": result.gate.metric,
        "training_data_sha256": result.data_fingerprint,
        **{k: MetadataValue.float(v) for k, v in sorted(round_metrics(result.metrics).items())},
        **{k: MetadataValue.int(int(v)) for k, v in sorted(result.counts.items())},
        "weakest_categories": MetadataValue.md(weakest.markdown()),
    }


def gate_outcome(client_id: str, version: int, gate: GateResult) -> CheckOutcome:
    return CheckOutcome(
        QUALITY_GATE,
        gate.passed,
        f"client '{client_id}' v{version}: {gate.reason}",
        gate_check_metadata(gate),
    )


def train_and_register(cfg: ClientConfig, train: Callable[[ClientConfig], TrainingResult]):
    """Train one client with `train` (the core's `train_model` with the run's settings)."""
    try:
        result = train(cfg)
    except BettercatError as exc:
        return ClientOutcome.failed(str(exc))
    gate = gate_outcome(cfg.client_id, result.version, result.gate)
    if not result.gate.passed:
        return ClientOutcome.failed(
            f"quality gate failed for {gate.description}; "
            + (
                f"@champion stays v{result.previous_champion_version}"
                if result.previous_champion_version is not None
                else "the client has no @champion yet"
            ),
            checks=[gate],
        )
    return ClientOutcome(
        materialized=True,
        metadata=model_metadata(result),
        checks=[gate],
        data_version=f"v{result.version}",
    )


__all__ = ["QUALITY_GATE", "train_and_register", "train_model"]
