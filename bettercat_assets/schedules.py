"""Schedules as in the seed: retrain every client monthly, re-score daily. Off by default.

A tick requests runs only for clients whose `clients.yaml` entry is valid; each invalid one is
skipped with a warning in the tick's log that names the client and the key.
"""

from collections.abc import Iterator

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from bettercat_assets.core.errors import BettercatError
from bettercat_assets.jobs import scoring_job, training_job
from bettercat_assets.partitions import client_partitions
from bettercat_assets.resources import ClientsResource


def valid_clients(context: ScheduleEvaluationContext, clients: ClientsResource) -> list[str]:
    """The partitions whose entry is valid now; log the others and why."""
    registry = clients.registry()
    good = []
    for client_id in client_partitions.get_partition_keys():
        try:
            registry.get(client_id)
        except BettercatError as exc:
            context.log.warning(f"skipping client '{client_id}': {exc}")
            continue
        good.append(client_id)
    return good


@schedule(
    job=training_job,
    cron_schedule="0 2 1 * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Retrain every client on the 1st of the month (clients with a valid entry).",
)
def monthly_retraining(
    context: ScheduleEvaluationContext, clients: ClientsResource
) -> Iterator[RunRequest | SkipReason]:
    stamp = context.scheduled_execution_time.strftime("%Y-%m")
    good = valid_clients(context, clients)
    if not good:
        yield SkipReason("no client with a valid clients.yaml entry")
    for client_id in good:
        yield RunRequest(run_key=f"train-{client_id}-{stamp}", partition_key=client_id)


@schedule(
    job=scoring_job,
    cron_schedule="0 5 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Re-score every client daily with its @champion (clients with a valid entry).",
)
def daily_scoring(
    context: ScheduleEvaluationContext, clients: ClientsResource
) -> Iterator[RunRequest | SkipReason]:
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%d")
    good = valid_clients(context, clients)
    if not good:
        yield SkipReason("no client with a valid clients.yaml entry")
    for client_id in good:
        yield RunRequest(
            run_key=f"score-{client_id}-{stamp}",
            partition_key=client_id,
            run_config={"ops": {"category_predictions": {"config": {"day": stamp}}}},
        )
