"""Schedules as in the seed: retrain every client monthly, re-score daily. Off by default.

Each tick asks for range runs of up to MAX_CLIENTS_PER_RUN consecutive clients, like a backfill.
"""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    StaticPartitionsDefinition,
    schedule,
)

from bettercat_assets.jobs import SCORING_JOB, TRAINING_JOB
from bettercat_assets.partitions import client_ranges, range_tags


def _range_requests(
    prefix: str, stamp: str, client_ids: list[str], run_config: dict | None = None
) -> list[RunRequest]:
    return [
        RunRequest(
            run_key=f"{prefix}-{chunk[0]}-{chunk[-1]}-{stamp}",
            tags=range_tags(chunk),
            run_config=run_config or {},
        )
        for chunk in client_ranges(client_ids)
    ]


def build_schedules(partitions: StaticPartitionsDefinition) -> list[ScheduleDefinition]:
    client_ids = partitions.get_partition_keys()

    @schedule(
        job_name=TRAINING_JOB,
        cron_schedule="0 2 1 * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Retrain every client on the 1st of the month.",
    )
    def monthly_retraining(context: ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y-%m")
        return _range_requests("train", stamp, client_ids)

    @schedule(
        job_name=SCORING_JOB,
        cron_schedule="0 5 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Re-score every client daily with its @champion.",
    )
    def daily_scoring(context: ScheduleEvaluationContext):
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
        day = {"ops": {"client_assets": {"config": {"day": stamp}}}}
        return _range_requests("score", stamp, client_ids, day)

    return [monthly_retraining, daily_scoring]
