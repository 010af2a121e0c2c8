"""One static partition per client in `clients.yaml`; reloading the code location picks up edits."""

from dagster import StaticPartitionsDefinition

from bettercat_assets.core.config import load_clients

client_partitions = StaticPartitionsDefinition(load_clients().client_ids)
