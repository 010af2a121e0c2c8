"""Schedules as in the seed: retrain every client monthly, re-score daily. Off by default.

Each tick asks for range runs of up to MAX_CLIENTS_PER_RUN consecutive clients, like a backfill,
and only for clients whose `clients.yaml` entry is valid: each invalid one is skipped with a
warning in the tick's log that names the client and the key (and splits the range there).
"""

from collections.abc import Sequence

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    StaticPartitionsDefinition,
    schedule,
)

from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.jobs import SCORING_JOB, TRAINING_JOB
from bettercat_assets.partitions import range_tags, valid_ranges
from bettercat_assets.resources import ClientsResource


def valid_runs(
    context: ScheduleEvaluationContext, clients: ClientsResource, client_ids: Sequence[str]
) -> list[list[str]]:
    """Ranges of consecutive valid clients (at most MAX_CLIENTS_PER_RUN each); log the others."""
    registry = clients.registry()

    def is_valid(client_id: str) -> bool:
        try:
            registry.get(client_id)
        except BettercatError as exc:
            context.log.warning(f"skipping client '{client_id}': {exc}")
            return False
        return True

    return valid_ranges(client_ids, is_valid)


def _requests(
    prefix: str, stamp: str, runs: list[list[str]], run_config: dict | None = None
) -> list[RunRequest] | SkipReason:
    if not runs:
        return SkipReason("no client with a valid clients.yaml entry")
    return [
        RunRequest(
            run_key=f"{prefix}-{chunk[0]}-{chunk[-1]}-{stamp}",
            tags=range_tags(chunk),
            run_config=run_config or {},
        )
        for chunk in runs
    ]


def build_schedules(partitions: StaticPartitionsDefinition) -> list[ScheduleDefinition]:
    client_ids = partitions.get_partition_keys()

    @schedule(
        job_name=TRAINING_JOB,
        cron_schedule="0 2 1 * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Retrain every client on the 1st of the month (clients with a valid entry).",
    )
    def monthly_retraining(context: ScheduleEvaluationContext, clients: ClientsResource):
        stamp = context.scheduled_execution_time.strftime("%Y-%m")
        return _requests("train", stamp, valid_runs(context, clients, client_ids))

    @schedule(
        job_name=SCORING_JOB,
        cron_schedule="0 5 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Re-score every client daily with its @champion (clients with a valid entry).",
    )
    def daily_scoring(context: ScheduleEvaluationContext, clients: ClientsResource):
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
        day = {"ops": {"client_assets": {"config": {"day": stamp}}}}
        return _requests("score", stamp, valid_runs(context, clients, client_ids), day)

    return [monthly_retraining, daily_scoring]
