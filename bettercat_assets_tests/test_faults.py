"""Faults: a scoring process SIGKILLed mid-write, the tracking server down when training starts,
and a training killed between logging its model and registering it.

Each test uses its own client ids (own clients.yaml, own data prefix) so the shared session
fixtures are not disturbed; the session's sqlite MLflow store is reused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from bettercat_assets_tests.reliability_support import (
    BIN,
    REPO,
    free_port,
    subprocess_env,
    tree_digest,
    write_clients_file,
)

pytestmark = pytest.mark.integration

DAY = date(2026, 3, 1)
SCORE_CID = "fault_score"
KILL_CID = "fault_kill"


@pytest.fixture(scope="module")
def fault_world(tmp_path_factory):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data

    root = tmp_path_factory.mktemp("faults")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {SCORE_CID}, features: [price, weight_g], "
            "sample_data: {products: 400, categories: 6}}",
            f"{{client_id: {KILL_CID}, features: [price, rating], "
            "sample_data: {products: 300, categories: 4, noise: 0.2}}",
        ],
    )
    registry = load_clients(clients_file)
    layout = DataLayout(root / "data")
    for cid in registry.client_ids:
        generate_client_data(registry.get(cid), layout, seed=21)
    return registry, layout


def _frame(path: Path) -> pd.DataFrame:
    table = ds.dataset(path, format="parquet").to_table().to_pandas()
    return table.sort_values(["product_id", "rank"]).reset_index(drop=True)


# --- SIGKILL while the scoring output is being written ----------------------------------------


@pytest.fixture(scope="module")
def sigkilled(fault_world, spark, tracking_settings):
    """A first scoring, then `bettercat predict` SIGKILLed while Spark writes its staged output,
    then the same command again. Returns what the test steps below assert on."""
    from bettercat_assets.cli import main
    from bettercat_assets.core.scoring.spark_pass import predict_categories
    from bettercat_assets.core.training.train import train_model

    registry, layout = fault_world
    cfg = registry.get(SCORE_CID)
    train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    previous = predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    final = previous.output_dir
    root = final.parent
    # A scoring run's scratch folder: `products_categories/_run-date=<day>-<tag>/`, its
    # staged output in `output/` (core/config/paths.py `scoring_workdir`).
    area = layout.scoring_workdir(DAY, "x").parent
    before = tree_digest(final)
    before_frame = _frame(final)
    assert before and len(before_frame) == previous.rows_written

    proc = subprocess.Popen(
        [str(BIN / "bettercat"), "predict", "--client-id", SCORE_CID, "--inference-date", str(DAY)],
        env=subprocess_env(
            BETTERCAT_CLIENTS_FILE=str(registry.path),
            DATA_PREFIX=str(layout.prefix),
            SPARK_MASTER="local[1]",
        ),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the JVM and Python workers die too
    )
    staging: list[Path] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            staging = list(area.glob(f"_run-date={DAY}-*/output"))
            if staging:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and not staging:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    assert staging, f"the staging directory never appeared; predict exited {proc.returncode}: {err}"
    killed = {
        "returncode": proc.returncode,
        "final_exists": final.exists(),
        "final_digest": tree_digest(final) if final.exists() else None,
        "olds": [tree_digest(p) for p in root.glob(f"_old-{final.name}-*")],
        "dates": [p.name for p in root.iterdir() if p.name.startswith("date=")],
        "scratch": sorted(p.name for p in area.iterdir() if p.name.startswith("_")),
    }

    # Re-running the same command converges.
    rerun = CliRunner().invoke(
        main,
        [
            "predict",
            "--client-id",
            SCORE_CID,
            "--inference-date",
            str(DAY),
            "--clients-file",
            str(registry.path),
            "--data-prefix",
            str(layout.prefix),
        ],
    )
    return {
        "final": final,
        "root": root,
        "area": area,
        "before": before,
        "before_frame": before_frame,
        "killed": killed,
        "rerun": rerun,
    }


def test_sigkill_mid_write_keeps_previous_output_and_rerun_converges(sigkilled):
    final, killed = sigkilled["final"], sigkilled["killed"]
    assert killed["returncode"] == -signal.SIGKILL

    # Never half-written: the date's directory is the previous output, byte for byte. (A kill
    # between the two renames of the swap would leave it absent, with the old output set aside
    # as `_old-...`; it is never a mix.)
    if killed["final_exists"]:
        assert killed["final_digest"] == sigkilled["before"]
    else:  # pragma: no cover - needs the kill to land between two renames
        assert killed["olds"] == [sigkilled["before"]]
    assert killed["dates"] == [final.name]
    assert any(name.startswith(f"_run-date={DAY}-") for name in killed["scratch"]), killed

    # Re-running the same command converges: correct output, nothing beside it.
    result = sigkilled["rerun"]
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in sigkilled["root"].iterdir()) == [final.name]
    pd.testing.assert_frame_equal(_frame(final), sigkilled["before_frame"])


def test_rerun_after_sigkill_leaves_no_scratch_folder(sigkilled):
    assert sigkilled["rerun"].exit_code == 0
    leftovers = sorted(p.name for p in sigkilled["area"].iterdir() if p.name.startswith("_"))
    assert leftovers == [], leftovers


# --- the tracking server is down when training starts -----------------------------------------


@pytest.fixture(scope="module")
def tracking_down(sample_data, tracking_settings):
    """foxtrot's training_data + registered_model with nothing listening at the tracking URI."""
    from dagster import instance_for_test

    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
    from bettercat_assets_tests.dagster_support import materialize_clients

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    resources = {
        "clients": ClientsResource(
            clients_file=os.environ["BETTERCAT_CLIENTS_FILE"],
            data_prefix=os.environ["DATA_PREFIX"],
        ),
        "mlflow": MlflowResource(tracking_uri=uri),
        "spark": SparkResource(master="local[2]"),  # never started: nothing is scored
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
        try:
            with instance_for_test() as instance:
                result = materialize_clients(
                    ["training_data", "registered_model"],
                    "foxtrot",
                    instance,
                    resources=resources,
                    raise_on_error=False,
                )
        finally:
            mlflow.set_tracking_uri(tracking_settings.tracking_uri)
            mlflow.set_registry_uri(tracking_settings.tracking_uri)
    return uri, result


def _step_events(result, event_type=None):
    return [
        e
        for e in result.all_events
        if e.step_key == "client_assets" and (event_type is None or e.event_type == event_type)
    ]


def test_tracking_server_down_fails_naming_the_uri(tracking_down):
    from bettercat_assets_tests.dagster_support import materialized_partitions

    uri, result = tracking_down
    assert not result.success
    failures = [e for e in _step_events(result) if e.is_step_failure]
    assert len(failures) == 1
    chain = _error_chain(failures[0].step_failure_data.error)
    # The transient error exhausted TRANSIENT_RETRY (see the next test), naming the URI.
    assert chain[0] == ("RetryRequestedFromPolicy", "Exceeded max_retries of 2"), chain
    cls_name, message = chain[1]
    assert cls_name == "TrackingUnavailableError", chain
    assert f"TrackingUnavailableError: MLflow tracking store {uri} is unavailable: " in message, (
        message
    )
    assert "Connection refused" in message
    # The data stage ran; the model stage failed in the preflight, before any MLflow run.
    assert materialized_partitions(result) == {("training_data", "foxtrot")}
    assert mlflow.active_run() is None


def test_tracking_server_down_is_retried_twice(tracking_down):
    from dagster import DagsterEventType

    uri, result = tracking_down
    retries = _step_events(result, DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 2, "TRANSIENT_RETRY allows two retries"
    failures = [e for e in _step_events(result) if e.is_step_failure]
    chain = _error_chain(failures[0].step_failure_data.error)
    assert chain[0] == ("RetryRequestedFromPolicy", "Exceeded max_retries of 2"), chain
    for retry in retries:  # every attempt failed the same way, in the preflight
        retry_chain = _error_chain(retry.event_specific_data.error)
        assert retry_chain[1][0] == "TrackingUnavailableError", retry_chain
        assert uri in retry_chain[1][1]


# --- a training killed between logging the model and registering it ---------------------------


def _error_chain(error) -> list[tuple[str, str]]:
    """(class name, first line) of a Dagster SerializableErrorInfo and its causes."""
    chain = []
    while error is not None:
        chain.append((error.cls_name, error.message.strip().splitlines()[0]))
        error = error.cause or error.context
    return chain


def _runs(client, experiment_name: str):
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return runs


def test_training_interrupted_before_registration_ends_its_run(
    fault_world, tracking_settings, monkeypatch
):
    from bettercat_assets.core.tracking import runs as tracking
    from bettercat_assets.core.training.train import train_model

    registry, layout = fault_world
    cfg = registry.get(KILL_CID)
    client = tracking.mlflow_client(tracking_settings)
    first = train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    base = first.version

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    def exited(*_args, **_kwargs):
        raise SystemExit(143)

    def broken(*_args, **_kwargs):
        raise RuntimeError("registry write failed")

    for fake, exc_type, status in [
        (interrupted, KeyboardInterrupt, "KILLED"),
        (exited, SystemExit, "KILLED"),
        (broken, RuntimeError, "FAILED"),
    ]:
        with monkeypatch.context() as patch:
            patch.setattr(mlflow, "register_model", fake)
            with pytest.raises(exc_type):
                train_model(cfg, DAY, layout=layout, settings=tracking_settings)
        assert mlflow.active_run() is None
        last = _runs(client, cfg.experiment_name)[-1]
        assert last.info.status == status, (fake.__name__, last.info.status)
        assert "registered_version" not in last.data.tags
        versions = client.search_model_versions(f"name = '{cfg.model_name}'")
        assert sorted(int(v.version) for v in versions) == [base]
        assert int(tracking.champion_version(client, cfg.model_name).version) == base

    again = train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    assert again.version == base + 1
    assert again.champion_version == base + 1
    assert client.get_run(again.run_id).info.status == "FINISHED"


KILL_SCRIPT = """
import os, sys
from datetime import date
import mlflow
from bettercat_assets.core.config.clients import load_clients
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.training.train import train_model

def die(*args, **kwargs):
    sys.stdout.write("dying\\n"); sys.stdout.flush()
    os._exit(137)  # like SIGKILL: no unwinding, no atexit

mlflow.register_model = die
cfg = load_clients(sys.argv[1]).get(sys.argv[2])
train_model(cfg, date(2026, 3, 2), layout=DataLayout(sys.argv[3]), settings=TrackingSettings.from_env())
"""


def test_training_process_killed_before_registration_is_reaped_by_the_next(
    fault_world, tracking_settings
):
    from bettercat_assets.core.tracking import runs as tracking
    from bettercat_assets.core.training.train import train_model

    registry, layout = fault_world
    cfg = registry.get(KILL_CID)
    client = tracking.mlflow_client(tracking_settings)
    before = sorted(
        int(v.version) for v in client.search_model_versions(f"name = '{cfg.model_name}'")
    )
    if not before:
        before = [train_model(cfg, DAY, layout=layout, settings=tracking_settings).version]

    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(registry.path), KILL_CID, str(layout.prefix)],
        env=subprocess_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 137, proc.stderr
    orphan = _runs(client, cfg.experiment_name)[-1]
    assert orphan.info.status == "RUNNING"  # nobody could end it
    assert orphan.data.tags[tracking.PID_TAG].isdigit()
    assert (
        sorted(int(v.version) for v in client.search_model_versions(f"name = '{cfg.model_name}'"))
        == before
    )

    result = train_model(cfg, DAY, layout=layout, settings=tracking_settings)
    assert result.version == before[-1] + 1
    reaped = client.get_run(orphan.info.run_id)
    assert reaped.info.status == "KILLED"
    assert "is gone" in reaped.data.tags["ended_by"]
    assert client.get_run(result.run_id).info.status == "FINISHED"


def test_reaper_leaves_live_and_foreign_runs_alone(tracking_settings, tmp_path):
    """Unit-level: only RUNNING runs of dead processes on this host are reaped."""
    import socket

    from bettercat_assets.core.tracking import runs as tracking

    client = tracking.mlflow_client(tracking_settings)
    experiment_id = client.create_experiment(f"bettercat/reaper-{os.getpid()}-{time.time_ns()}")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    try:
        live_run = client.create_run(
            experiment_id, tags={tracking.HOST_TAG: host, tracking.PID_TAG: str(sleeper.pid)}
        )
        dead_run = client.create_run(
            experiment_id, tags={tracking.HOST_TAG: host, tracking.PID_TAG: str(dead.pid)}
        )
        foreign = client.create_run(
            experiment_id, tags={tracking.HOST_TAG: "other-host", tracking.PID_TAG: "1"}
        )
        untagged = client.create_run(experiment_id)
        reaped = tracking.reap_orphaned_runs(client, experiment_id)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert reaped == [dead_run.info.run_id]
    status = {
        r.info.run_id: r.info.status for r in client.search_runs([experiment_id], run_view_type=3)
    }
    assert status[dead_run.info.run_id] == "KILLED"
    for run in (live_run, foreign, untagged):
        assert status[run.info.run_id] == "RUNNING"


def test_tracking_down_is_not_mistaken_for_a_missing_model(monkeypatch, tracking_settings):
    """Scoring asks the registry for @champion: a dead server must not read as "no model yet"
    (a user error, not retried) but as a transient TrackingUnavailableError naming the URI."""
    from bettercat_assets.core.config.errors import BettercatError
    from bettercat_assets.core.config.settings import TrackingSettings
    from bettercat_assets.core.model import store as model_store
    from bettercat_assets.core.tracking import runs as tracking

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    settings = TrackingSettings(tracking_uri=f"http://127.0.0.1:{free_port()}")
    try:
        client = tracking.mlflow_client(settings)
        calls = [
            lambda: tracking.serving_version(client, "x_model", "x"),
            lambda: tracking.get_version(client, "x_model", 1, "x"),
            lambda: model_store.model_artifact_uri(settings, "x_model", 1),
        ]
        for call in calls:
            with pytest.raises(tracking.TrackingUnavailableError) as info:
                call()
            assert not isinstance(info.value, BettercatError)
            assert str(info.value).startswith(
                f"MLflow tracking store {settings.tracking_uri} is unavailable: "
                "ConnectionRefusedError"
            ), info.value
    finally:
        mlflow.set_tracking_uri(tracking_settings.tracking_uri)
        mlflow.set_registry_uri(tracking_settings.tracking_uri)


def test_run_killed_between_the_two_renames_gets_its_previous_output_back(tmp_path):
    """`_swap_in` moves the old output aside, then the new one in; a kill in between leaves only
    `_old-*`. The next run restores it before anything else."""
    from bettercat_assets.core.scoring.spark_pass import _clear_leftovers

    final = tmp_path / "date=2026-01-01"
    old = tmp_path / "_old-date=2026-01-01-abcd1234"
    old.mkdir()
    (old / "part-0.parquet").write_bytes(b"previous output")
    staging = tmp_path / "_staging-date=2026-01-01-ffff0000"
    staging.mkdir()
    _clear_leftovers(final)
    assert (final / "part-0.parquet").read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["date=2026-01-01"]
