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

#: The session's environment, also kept here: session fixtures read it from this dict, so a
#: fixture first requested inside a test that monkeypatches the environment still gets it.
SESSION_ENV = dict(
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
        # Every Spark driver JVM a test starts (pyspark's spark-submit reads this) skips the
        # optimising JIT (C2): test jobs are tiny, and C2's compile threads are the suite's
        # largest CPU cost on 2 cores (test_concurrency.py: 75 s -> 64 s). bench/ keeps Spark's
        # defaults.
        "SPARK_SUBMIT_OPTS": "-XX:TieredStopAtLevel=1",
    }
)
#: Unset for the whole session: no Spark Connect, no shared Dagster home.
SESSION_UNSET = ("SPARK_REMOTE", "DAGSTER_HOME")
os.environ.update(SESSION_ENV)
for _name in SESSION_UNSET:
    os.environ.pop(_name, None)


#: The longest modules, longest first: collected first, so that `pytest -n 3 --dist loadfile`
#: (`make test`) starts them on different workers instead of leaving one for the end.
LONGEST_MODULES = (
    "test_e2e_dagster_dev.py",
    "test_production_profile.py",
    "test_concurrency.py",
    "test_demo.py",  # second on the e2e worker: the e2e module alone is the longest
    "test_spark_cluster.py",
    "test_soak.py",
    "test_concurrent_writes.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)  # stable: the order within a module and among the rest is kept


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def _session_environment() -> Iterator[None]:
    """Each test leaves the session's environment and MLflow URIs as it found them.

    `mlflow.set_tracking_uri` (which `tracking.mlflow_client` calls) also sets
    $MLFLOW_TRACKING_URI, so a test against a private store would otherwise hand its store to
    every later test of the same worker.
    """
    yield
    os.environ.update(SESSION_ENV)
    for name in SESSION_UNSET:
        os.environ.pop(name, None)
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(SESSION_ENV["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(SESSION_ENV["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _SESSION_ROOT


@pytest.fixture(scope="session")
def registry():
    from bettercat_assets.core.config.clients import load_clients

    return load_clients(SESSION_ENV["BETTERCAT_CLIENTS_FILE"])


@pytest.fixture(scope="session")
def layout():
    from bettercat_assets.core.config.paths import DataLayout

    return DataLayout(Path(SESSION_ENV["DATA_PREFIX"]))


@pytest.fixture(scope="session")
def tracking_settings():
    from bettercat_assets.core.config.settings import TrackingSettings

    return TrackingSettings(
        tracking_uri=SESSION_ENV["MLFLOW_TRACKING_URI"],
        artifact_root=SESSION_ENV["BETTERCAT_ARTIFACT_ROOT"],
    )


@pytest.fixture(scope="session")
def sample_data(registry, layout):
    """Generated data for every fixture client (fast: a few hundred rows each)."""
    from bettercat_assets.core.data.generate import generate_all

    return {g.client_id: g for g in generate_all(registry.clients.values(), layout, seed=3)}


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The one local Spark session of the test run."""
    from bettercat_assets.core.spark.session import build_spark_session

    session = build_spark_session(master="local[2]", conf={"spark.driver.memory": "1g"})
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mlflow_client(tracking_settings):
    from bettercat_assets.core.tracking import runs as tracking

    return tracking.mlflow_client(tracking_settings)
