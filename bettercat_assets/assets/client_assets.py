"""The three client-partitioned assets as one subsettable multi-asset that serves a range run.

A backfill run covers up to `MAX_CLIENTS_PER_RUN` clients (`BackfillPolicy.multi_run`): one
process, one MLflow client and one Spark session serve them all, while everything stays per
client: its own MLflow run, registered version and gate, metadata and check results on its own
partition, and its own failure. A client that fails at one stage skips its later stages; the
other clients go on, and the step fails at the end naming the clients that failed.
"""

from collections.abc import Iterator, Mapping
from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MetadataValue,
    PartitionsDefinition,
    multi_asset,
)

from bettercat_assets.assets import (
    CATEGORY_PREDICTIONS,
    REGISTERED_MODEL,
    STAGE_ORDER,
    TRAINING_DATA,
    TRANSIENT_RETRY,
)
from bettercat_assets.assets.category_predictions import (
    category_predictions_checks,
    category_predictions_spec,
    score_all,
)
from bettercat_assets.assets.outcomes import ClientOutcome, stage_events
from bettercat_assets.assets.registered_model import (
    registered_model_checks,
    registered_model_spec,
    train_and_register,
)
from bettercat_assets.assets.run_config import DatedRunConfig
from bettercat_assets.assets.training_data import (
    training_data_checks,
    training_data_spec,
    validate_training_data,
)
from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.training.train import train_model
from bettercat_assets.partitions import BACKFILL_POLICY
from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource

BLOCKING_STAGES = {TRAINING_DATA: True, REGISTERED_MODEL: True, CATEGORY_PREDICTIONS: False}


class ClientRun:
    """One run's clients through the selected stages, in pipeline order."""

    def __init__(
        self,
        context: AssetExecutionContext,
        day: date,
        clients: ClientsResource,
        mlflow: MlflowResource,
        spark: SparkResource,
    ) -> None:
        self.context, self.day = context, day
        self.clients, self.mlflow, self.spark = clients, mlflow, spark
        self.errors: dict[str, str] = {}

    def execute(self) -> Iterator[object]:
        active = self._configs(self.context.partition_keys)
        for key in (k for k in STAGE_ORDER if k in self.context.selected_asset_keys):
            outcomes = self._run_stage(key, active)
            for cid, outcome in outcomes.items():
                self._report(key, cid, outcome)
            yield from stage_events(
                self.context, key, outcomes, BLOCKING_STAGES[key], per_partition=bool(self.errors)
            )
            active = {cid: cfg for cid, cfg in active.items() if outcomes[cid].ok}
        if self.errors:
            raise self._failure()

    def _configs(self, client_ids: list[str]) -> dict[str, ClientConfig]:
        configs = {}
        for cid in client_ids:
            try:
                configs[cid] = self.clients.client(cid)
            except BettercatError as exc:
                self.errors[cid] = str(exc)
                self.context.log.error(f"{cid}: {exc}")
        return configs

    def _run_stage(
        self, key: AssetKey, configs: Mapping[str, ClientConfig]
    ) -> dict[str, ClientOutcome]:
        if key == TRAINING_DATA:
            layout = self.clients.layout
            return {cid: validate_training_data(cfg, layout) for cid, cfg in configs.items()}
        if key == REGISTERED_MODEL:
            return {cid: train_and_register(cfg, self._train) for cid, cfg in configs.items()}
        return score_all(
            configs,
            self.day,
            spark=self.spark.spark_session if configs else None,
            layout=self.clients.layout,
            settings=self.mlflow.settings,
            lineage={"dagster_run_id": self.context.run.run_id},
            log=self.context.log.info,
        )

    def _train(self, cfg: ClientConfig):
        run_id = self.context.run.run_id
        return train_model(
            cfg,
            self.day,
            layout=self.clients.layout,
            settings=self.mlflow.settings,
            run_name=self.mlflow.run_name(cfg.client_id, self.day, run_id),
            extra_tags=self.mlflow.run_tags(cfg.client_id, run_id),
            progress=self.context.log.info,
        )

    def _report(self, key: AssetKey, cid: str, outcome: ClientOutcome) -> None:
        stage = key.to_user_string()
        if outcome.ok:
            self.context.log.info(f"{cid}: {stage} done")
            return
        self.errors[cid] = f"{stage}: {outcome.error}"
        self.context.log.error(f"{cid}: {stage} failed: {outcome.error}")

    def _failure(self) -> Failure:
        total = len(self.context.partition_keys)
        lines = [f"- {cid}: {error}" for cid, error in self.errors.items()]
        return Failure(
            description=f"{len(self.errors)} of {total} client(s) failed:\n" + "\n".join(lines),
            metadata={"failed_clients": MetadataValue.json(self.errors)},
            allow_retries=False,
        )


def build_client_assets(partitions: PartitionsDefinition) -> AssetsDefinition:
    """The multi-asset over `partitions`; a subset (say only predictions) runs only its stages."""

    @multi_asset(
        name="client_assets",
        specs=[
            training_data_spec(partitions),
            registered_model_spec(partitions),
            category_predictions_spec(partitions),
        ],
        check_specs=[
            *training_data_checks(partitions),
            *registered_model_checks(partitions),
            *category_predictions_checks(partitions),
        ],
        can_subset=True,
        backfill_policy=BACKFILL_POLICY,
        retry_policy=TRANSIENT_RETRY,
        description="Data checks, training and scoring for a range of clients in one process.",
    )
    def client_assets(
        context: AssetExecutionContext,
        config: DatedRunConfig,
        clients: ClientsResource,
        mlflow: MlflowResource,
        spark: SparkResource,
    ) -> Iterator[object]:
        yield from ClientRun(context, config.resolved_day(), clients, mlflow, spark).execute()

    return client_assets
