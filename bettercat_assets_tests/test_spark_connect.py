"""Scoring through a real Spark Connect server started from the installed pyspark."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow.dataset as ds
import pyspark
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark Connect server exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Spark Connect server did not listen on {port}")


@pytest.fixture(scope="module")
def connect_url(tmp_path_factory):
    spark_home = Path(pyspark.__file__).parent
    port = _free_port()
    logs = tmp_path_factory.mktemp("spark-connect-logs")
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOG_DIR": str(logs),
        "SPARK_PID_DIR": str(logs),
        "PYSPARK_PYTHON": sys.executable,
    }
    proc = subprocess.Popen(
        [
            str(spark_home / "sbin" / "start-connect-server.sh"),
            "--wait",
            "--master",
            "local[2]",
            "--conf",
            f"spark.connect.grpc.binding.port={port}",
            "--conf",
            "spark.driver.memory=1g",
            "--conf",
            "spark.ui.enabled=false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, proc)
        yield f"sc://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_cli_scores_a_client_through_spark_connect(
    connect_url, registry, layout, tracking_settings, sample_data
):
    from bettercat_assets.core.training.train import train_model

    cfg = registry.get("golf")
    trained = train_model(cfg, date(2026, 3, 1), layout=layout, settings=tracking_settings)
    bettercat = Path(sys.executable).with_name("bettercat")
    result = subprocess.run(
        [str(bettercat), "predict", "--client-id", "golf", "--inference-date", "2026-03-02"],
        env={**os.environ, "SPARK_REMOTE": connect_url},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"starting Spark ({connect_url})" in result.stderr
    out = ds.dataset(layout.predictions_dir("golf", date(2026, 3, 2)), format="parquet")
    table = out.to_table().to_pandas()
    products = sample_data["golf"].predict_rows
    assert table["product_id"].nunique() == products
    assert len(table) == products * 5
    assert set(table["model_version"]) == {trained.version}


def test_wrong_outputs_fail_their_client_only_under_spark_connect(
    connect_url, registry, layout, tracking_settings, sample_data
):
    """The pass statistics reach the driver without accumulators: each wrong output injected
    into the Connect server's workers fails its own client's checks, and only those (in a
    process of its own: pyspark refuses a remote session beside this session's classic one)."""
    import json

    from bettercat_assets_tests import pass_checks_support as support

    support.train_clients(registry, layout, tracking_settings)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bettercat_assets_tests.pass_checks_support",
            connect_url,
            str(registry.path),
            str(layout.prefix),
            tracking_settings.tracking_uri,
            tracking_settings.artifact_root,
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert failed == {
        cid: sorted(support.DEFECTS.get(cid, ("none", set()))[1]) for cid in support.CLIENTS
    }
