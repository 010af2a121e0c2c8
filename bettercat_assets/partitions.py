"""One static partition per client in `clients.yaml`; reloading the code location picks up edits.

An invalid client entry keeps its partition (its runs fail with the validation error); the
problems are logged as warnings when the code location loads.
"""

from dagster import StaticPartitionsDefinition

from bettercat_assets.config_report import warn_about_problems
from bettercat_assets.core.config import load_clients

_registry = load_clients()
warn_about_problems(_registry)
client_partitions = StaticPartitionsDefinition(_registry.client_ids)
