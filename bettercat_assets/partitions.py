"""One static partition per client in `clients.yaml`, and how many clients one run covers."""

from collections.abc import Callable, Sequence

from dagster import BackfillPolicy, StaticPartitionsDefinition
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from bettercat_assets.core.config.clients import ClientRegistry

#: The one place that sets how many clients a backfill run covers: a run pays its fixed costs
#: (process start, imports, a Spark session) once for up to this many clients.
MAX_CLIENTS_PER_RUN = 50
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=MAX_CLIENTS_PER_RUN)


def client_partitions(registry: ClientRegistry) -> StaticPartitionsDefinition:
    """The clients as partitions, in `clients.yaml` order (backfill ranges follow this order)."""
    return StaticPartitionsDefinition(registry.client_ids)


def client_ranges(client_ids: list[str], size: int = MAX_CLIENTS_PER_RUN) -> list[list[str]]:
    """Consecutive chunks of at most `size` clients: the partition ranges of range runs."""
    return [client_ids[i : i + size] for i in range(0, len(client_ids), size)]


def valid_ranges(client_ids: Sequence[str], is_valid: Callable[[str], bool]) -> list[list[str]]:
    """Ranges of consecutive clients for which `is_valid` holds, split at each invalid one and
    chunked by `client_ranges`: what a schedule tick or the demo launches as range runs."""
    ranges: list[list[str]] = []
    current: list[str] = []
    for client_id in client_ids:
        if is_valid(client_id):
            current.append(client_id)
        else:
            ranges += client_ranges(current)
            current = []
    return ranges + client_ranges(current)


def range_tags(client_ids: list[str]) -> dict[str, str]:
    """Run tags that make one run cover a contiguous range of clients, as backfills do."""
    return {
        ASSET_PARTITION_RANGE_START_TAG: client_ids[0],
        ASSET_PARTITION_RANGE_END_TAG: client_ids[-1],
    }
