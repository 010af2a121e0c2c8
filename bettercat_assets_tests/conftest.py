"""Shared fixtures: one workspace, one Spark session and one MLflow store per test session.

The environment is pointed at a temporary workspace before any bettercat module that reads it
(the Dagster definitions read `clients.yaml` at import) is imported by a test.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="bettercat-tests-"))

os.environ.update(
    {
        "BETTERCAT_HOME": str(_SESSION_ROOT / "home"),
        "DATA_PREFIX": str(_SESSION_ROOT / "data"),
        "BETTERCAT_CLIENTS_FILE": str(FIXTURES / "clients.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{_SESSION_ROOT / 'home' / 'mlflow.db'}",
        "BETTERCAT_ARTIFACT_ROOT": (_SESSION_ROOT / "home" / "mlartifacts").as_uri(),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "SPARK_MASTER": "local[2]",
    }
)
os.environ.pop("SPARK_REMOTE", None)
os.environ.pop("DAGSTER_HOME", None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _SESSION_ROOT


@pytest.fixture(scope="session")
def registry():
    from bettercat_assets.core.config import load_clients

    return load_clients()


@pytest.fixture(scope="session")
def layout():
    from bettercat_assets.core.paths import DataLayout

    return DataLayout(Path(os.environ["DATA_PREFIX"]))


@pytest.fixture(scope="session")
def tracking_settings():
    from bettercat_assets.core.settings import TrackingSettings

    return TrackingSettings.from_env()


@pytest.fixture(scope="session")
def sample_data(registry, layout):
    """Generated data for every fixture client (fast: a few hundred rows each)."""
    from bettercat_assets.core.generate import generate_all

    return {g.client_id: g for g in generate_all(registry.clients.values(), layout, seed=3)}


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The one local Spark session of the test run."""
    from bettercat_assets.core.spark_session import build_spark_session

    session = build_spark_session(master="local[2]", conf={"spark.driver.memory": "1g"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_client(tracking_settings):
    from bettercat_assets.core import tracking

    return tracking.mlflow_client(tracking_settings)
