"""Bad `clients.yaml` entries made visible where the code location loads (Dagster's log)."""

from __future__ import annotations

import logging

from dagster import get_dagster_logger

from bettercat_assets.core.config.clients import ClientRegistry


def warn_about_problems(registry: ClientRegistry, logger: logging.Logger | None = None) -> None:
    """Log one warning per problem of the clients file; the other clients load as usual."""
    problems = registry.problems
    if not problems:
        return
    log = logger or get_dagster_logger("bettercat")
    usable = len(registry.clients)
    log.warning(
        "%s: %d problem(s); %d of %d client partition(s) usable; the runs of an invalid client "
        "fail with its error (`bettercat check-config` lists them):",
        registry.path,
        len(problems),
        usable,
        len(registry.client_ids),
    )
    for line in problems:
        log.warning("%s", line)
