"""The fleet server's knobs and their defaults (light: the CLI imports it for `--help`).

Default budget: 1 GiB of loaded models. With the interpreter, MLflow, pandas and FastAPI
(~250 MB) a full cache keeps the server near 1.3 GB of RSS; see docs/serving.md for sizing.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CACHE_MB = 1024.0
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_MB = 16.0
DEFAULT_POLL_S = 2.0


@dataclass(frozen=True)
class FleetLimits:
    """`bettercat serve` options of the same names."""

    cache_mb: float = DEFAULT_CACHE_MB
    max_rows: int = DEFAULT_MAX_ROWS
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    poll_seconds: float = DEFAULT_POLL_S
