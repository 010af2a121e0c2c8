"""`category_predictions`: top-k categories per product from each client's champion, as parquet.

It is re-scored automatically when a client's champion changes: `registered_model` is
materialized only when a new version becomes `@champion` (a passing gate, `bettercat promote`
or the promote job), and the condition below asks for exactly those clients. A run that
already scores the client (say "Materialize all") is not followed by a second scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

from dagster import AssetSpec, AutomationCondition, MetadataValue, PartitionsDefinition

from bettercat_assets.assets import (
    CATEGORY_PREDICTIONS,
    CODE_VERSION,
    GROUP,
    OWNERS,
    REGISTERED_MODEL,
)
from bettercat_assets.assets.outcomes import ClientOutcome
from bettercat_assets.checks import check_specs
from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.rounding import round_frame
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.data.quality import PREDICTION_CHECKS
from bettercat_assets.core.scoring.spark_pass import ScoringRequest, ScoringResult, score_clients
from bettercat_assets.core.tracking import runs as tracking

#: Re-score a client once its champion changed (its `registered_model` was materialized by a
#: run that did not also score it), when nothing for it is in progress.
RESCORE_ON_NEW_CHAMPION = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("re-score when @champion changed")


def category_predictions_spec(partitions: PartitionsDefinition) -> AssetSpec:
    return AssetSpec(
        CATEGORY_PREDICTIONS,
        deps=[REGISTERED_MODEL],
        partitions_def=partitions,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"spark", "parquet"},
        code_version=CODE_VERSION,
        skippable=True,
        automation_condition=RESCORE_ON_NEW_CHAMPION,
        description="Top-k categories per product (product_id, pred_label, pred_score, rank, "
        "model_version), scored by the client's @champion with Spark mapInPandas and written "
        "as parquet to products_categories/client_id=<id>/date=<day>/.",
    )


def category_predictions_checks(partitions: PartitionsDefinition):
    return check_specs(
        "category_predictions", PREDICTION_CHECKS, blocking=False, partitions_def=partitions
    )


def prediction_metadata(result: ScoringResult, settings: TrackingSettings) -> dict[str, object]:
    """Per-client metadata: counts, links to the MLflow run and model version, path, preview."""
    links = tracking.prediction_links(
        settings, result.model_name, result.model_version, result.run_id
    )
    return {
        "rows_written": MetadataValue.int(result.rows_written),
        "products_scored": MetadataValue.int(result.products_scored),
        "model_version": MetadataValue.int(result.model_version),
        "model_run_id": result.run_id or "",
        **{name: MetadataValue.url(url) for name, url in links.items()},
        "path": MetadataValue.path(str(result.output_dir)),
        "preview": MetadataValue.md(round_frame(result.preview).to_markdown(index=False)),
    }


def score_all(
    configs: Mapping[str, ClientConfig],
    day: date,
    *,
    spark,
    layout: DataLayout,
    settings: TrackingSettings,
    lineage: dict[str, str],
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, ClientOutcome]:
    """Score every client of the run in one Spark pass; each gets its own outcome."""
    if not configs:
        return {}
    results = score_clients(
        [ScoringRequest(cfg) for cfg in configs.values()],
        day,
        spark=spark,
        layout=layout,
        settings=settings,
        extra_lineage=lineage,
    )
    timings = next((r.timings for r in results.values() if isinstance(r, ScoringResult)), {})
    if timings:
        spent = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in timings.items())
        log(f"scored {len(configs)} client(s): {spent}")
    outcomes: dict[str, ClientOutcome] = {}
    for cid, result in results.items():
        if isinstance(result, BettercatError):
            outcomes[cid] = ClientOutcome.failed(str(result))
            continue
        outcomes[cid] = ClientOutcome(
            materialized=True,
            metadata=prediction_metadata(result, settings),
            checks=list(result.checks),
            data_version=f"v{result.model_version}-{result.output_dir.name}",
        )
    return outcomes
