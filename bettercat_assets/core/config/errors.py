"""User-facing errors: one clear line naming the client, the file and the column or key."""

from __future__ import annotations


class BettercatError(Exception):
    """A mistake in user input (config, data, CLI arguments) rather than a bug."""


class ConfigError(BettercatError):
    """`clients.yaml` is missing, malformed or invalid."""


class UnknownClientError(BettercatError):
    """A client id that is not listed in `clients.yaml`."""


class DataError(BettercatError):
    """A client's input file is missing or does not have the expected shape or content."""

    def __init__(self, client_id: str, path: object, problem: str) -> None:
        self.client_id = client_id
        self.path = str(path)
        self.problem = problem
        super().__init__(f"client '{client_id}': {self.path}: {problem}")


class ModelNotFoundError(BettercatError):
    """No registered model (or no such version) exists for a client."""


class QualityGateError(BettercatError):
    """A newly trained model failed its quality gate and was not promoted to champion."""


class UnsafeModelError(BettercatError):
    """A model artifact contains types that are not on the trusted list."""


class TrackingUnavailableError(ConnectionError):
    """MLflow cannot be reached. Transient: deliberately not a BettercatError, so Dagster's
    retry policy retries it, while user mistakes fail at once."""
