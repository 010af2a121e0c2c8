"""Concurrency: a backfill of six fixture clients, four runs at a time.

Each partition runs `client_pipeline` with `execute_in_process` in a worker of a spawned
ProcessPoolExecutor(max_workers=4): four processes training, registering and scoring at once,
each with its own local[1] Spark (started once per worker and reused). Two backends:

(a) the embedded default, a sqlite MLflow store: concurrent writers are serialised by the
    cross-process `filelock` in `tracking.store_lock`, so no run fails with "database is locked";
(b) `mlflow server` backed by the local PostgreSQL, with proxied artifacts.

Both must give zero failed runs, six champions and six outputs.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from bettercat_assets.cli.common import MLFLOW_JOB_EXECUTION
from bettercat_assets_tests.reliability_support import (
    BIN,
    forget_artifact_root,
    free_port,
    run_client_pipeline,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = "2026-07-01"
WORKERS = 4
#: Clients per backfill: more than WORKERS, so some worker runs two and the queue drains.
CLIENTS = 6


def _clients(registry) -> list[str]:
    return registry.client_ids[:CLIENTS]


PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}


@pytest.fixture(scope="module")
def pool():
    """Four spawned workers shared by both backends, so each starts its JVM only once."""
    with ProcessPoolExecutor(
        max_workers=WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=forget_artifact_root,
    ) as executor:
        yield executor


def _backfill(pool, registry, prefix: Path, tracking_uri: str, artifact_root: str | None):
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_all

    layout = DataLayout(prefix)
    generate_all([registry.get(cid) for cid in _clients(registry)], layout, seed=3)
    started = time.perf_counter()
    futures = [
        pool.submit(
            run_client_pipeline,
            cid,
            DAY,
            os.environ["BETTERCAT_CLIENTS_FILE"],
            str(layout.prefix),
            tracking_uri,
            artifact_root,
        )
        for cid in _clients(registry)
    ]
    results = [f.result(timeout=900) for f in futures]
    elapsed = time.perf_counter() - started
    print(
        f"\nbackfill of {len(results)} clients on {WORKERS} workers against "
        f"{tracking_uri.split(':')[0]}: {elapsed:.0f}s; per run "
        + ", ".join(f"{r['client_id']}={r['seconds']:.0f}s" for r in results)
    )
    return layout, results


def _assert_backfill_complete(registry, layout, results, client) -> None:
    from bettercat_assets.core.tracking import runs as tracking

    failed = [r for r in results if not r["success"]]
    assert not failed, failed
    assert len({r["pid"] for r in results}) > 1, "runs did not overlap across processes"
    for cid in _clients(registry):
        cfg = registry.get(cid)
        champion = tracking.champion_version(client, cfg.model_name)
        assert champion is not None and int(champion.version) == 1, cid
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        runs = client.search_runs([experiment.experiment_id])
        assert [r.info.status for r in runs] == ["FINISHED"], cid
        assert runs[0].data.tags["client_id"] == cid
        assert champion.run_id == runs[0].info.run_id

        root = layout.predictions_root(cid)
        assert sorted(p.name for p in root.iterdir()) == [f"date={DAY}"], cid
        table = ds.dataset(root / f"date={DAY}", format="parquet").to_table().to_pandas()
        assert table["product_id"].str.startswith(f"P-{cid}-").all()
        assert set(table["model_version"]) == {1}
        k = min(cfg.top_k, cfg.sample_data.categories)
        assert (table.groupby("product_id").size() == k).all(), cid


def test_backfill_against_embedded_sqlite_store(pool, registry, tmp_path):
    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.tracking import runs as tracking

    # A brand-new store: the four workers also race to create its tables.
    settings = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=(tmp_path / "mlartifacts").as_uri(),
    )
    layout, results = _backfill(
        pool, registry, tmp_path / "data", settings.tracking_uri, settings.artifact_root
    )
    _assert_backfill_complete(registry, layout, results, tracking.mlflow_client(settings))


def _psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            PG["host"],
            "-p",
            PG["port"],
            "-U",
            PG["user"],
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a fresh PostgreSQL database (dropped afterwards), proxied artifacts."""
    if shutil.which("psql") is None:
        pytest.skip("psql not installed")
    try:
        _psql("SELECT 1")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no PostgreSQL on {PG['host']}:{PG['port']}: {exc}")
    db = f"bettercat_test_{uuid.uuid4().hex[:10]}"
    _psql(f"CREATE DATABASE {db}")
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{db}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, MLFLOW_JOB_EXECUTION: "false"},  # as deploy/docker-compose.yaml
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            raise RuntimeError((tmp_path / "mlflow-server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=180, interval=0.5, what=f"mlflow server at {url}")
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()
        _psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_backfill_against_mlflow_server_on_postgres(pool, registry, tmp_path, mlflow_server):
    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.tracking import runs as tracking

    # No artifact root: the server decides (`mlflow-artifacts:/`), the workers never learn where
    # its --artifacts-destination is.
    layout, results = _backfill(pool, registry, tmp_path / "data", mlflow_server, None)
    client = tracking.mlflow_client(TrackingSettings(tracking_uri=mlflow_server))
    _assert_backfill_complete(registry, layout, results, client)
    for cid in _clients(registry):
        experiment = client.get_experiment_by_name(registry.get(cid).experiment_name)
        assert experiment.artifact_location.startswith("mlflow-artifacts:/"), experiment
        [run] = client.search_runs([experiment.experiment_id])
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    # Artifacts went through the server's proxy into its destination: one model per client.
    stored = tmp_path / "server-artifacts"
    assert len([p for p in stored.rglob("model.skops")]) == len(_clients(registry))
