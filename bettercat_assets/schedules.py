"""Schedules as in the seed: retrain every client monthly, re-score daily. Off by default."""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from bettercat_assets.jobs import scoring_job, training_job
from bettercat_assets.partitions import client_partitions


@schedule(
    job=training_job,
    cron_schedule="0 2 1 * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Retrain every client on the 1st of the month.",
)
def monthly_retraining(context: ScheduleEvaluationContext):
    stamp = context.scheduled_execution_time.strftime("%Y-%m")
    for client_id in client_partitions.get_partition_keys():
        yield RunRequest(run_key=f"train-{client_id}-{stamp}", partition_key=client_id)


@schedule(
    job=scoring_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Re-score every client daily with its @champion.",
)
def daily_scoring(context: ScheduleEvaluationContext):
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for client_id in client_partitions.get_partition_keys():
        yield RunRequest(
            run_key=f"score-{client_id}-{stamp}",
            partition_key=client_id,
            run_config={"ops": {"category_predictions": {"config": {"day": stamp}}}},
        )
