"""Helpers shared by the reliability tests (bad inputs, faults, concurrency, isolation, soak).

Every reliability test works in its own temporary data prefix, with its own `clients.yaml`
(client ids no other test uses) or its own MLflow store, so it never disturbs the shared
session fixtures.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROGRESS_LINE = re.compile(r"^\[\s*\d+\.\ds\] ")

#: Small, fast model parameters for the reliability clients.
CLIENTS_HEADER = """\
defaults:
  model_params: {n_estimators: 10, min_samples_leaf: 3, max_features: sqrt, n_jobs: 1, random_state: 7}
  top_k: 5
  quality_gate: {min_top5_accuracy: 0.0, max_top5_regression: 1.0}
  data_checks: {max_null_share: 0.2, min_rows: 50}
clients:
"""


def write_clients_file(path: Path, entries: Iterable[str]) -> Path:
    """A clients.yaml with the reliability defaults and one flow-style entry per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CLIENTS_HEADER + "".join(f"  - {e}\n" for e in entries), encoding="utf-8")
    return path


def csv_bytes(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_gz_rows(path: Path, rows: Sequence[Sequence[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(csv_bytes(rows), mtime=0))
    return path


def read_gz_rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return [list(row) for row in csv.reader(handle)]


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 (files) or "<dir>" for everything under `root` (empty if absent)."""
    if not root.exists():
        return {}
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def du_bytes(*roots: Path) -> int:
    """Bytes of all regular files under the given roots (apparent size, like `du -b`)."""
    total = 0
    for root in roots:
        if root.is_file():
            total += root.stat().st_size
            continue
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def assert_one_error_line(exit_code: int, stdout: str, stderr: str) -> str:
    """The CLI's user-error contract: exit 2, nothing on stdout, one `error:` line last on
    stderr, anything before it a timestamped progress line, no traceback. Returns the line."""
    assert exit_code == 2, (exit_code, stdout, stderr)
    assert "Traceback" not in stdout + stderr, stderr
    assert stdout == "", stdout
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert lines[-1] == errors[0], lines
    assert all(PROGRESS_LINE.match(line) for line in lines[:-1]), lines
    return errors[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def mlflow_state(client, model_name: str, experiment_name: str) -> dict[str, object]:
    """What a failed command must leave unchanged: versions, champion and runs of a client."""
    from bettercat_assets.core.tracking import runs as tracking

    versions = sorted(
        int(v.version) for v in client.search_model_versions(f"name = '{model_name}'")
    )
    champion = tracking.champion_version(client, model_name)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = (
        sorted(r.info.run_id for r in client.search_runs([experiment.experiment_id]))
        if experiment
        else []
    )
    return {
        "versions": versions,
        "champion": int(champion.version) if champion else None,
        "runs": runs,
    }


def subprocess_env(**overrides: str) -> dict[str, str]:
    """This process's environment (the session's MLflow store, Spark settings) plus overrides."""
    env = {**os.environ, **overrides}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# --- concurrency worker (imported by ProcessPoolExecutor children, so module level) -----------


def forget_artifact_root() -> None:
    """Pool initializer: the workers get their artifact root (or None) only as an argument, so
    a run against an MLflow server is never told a local artifact folder."""
    os.environ.pop("BETTERCAT_ARTIFACT_ROOT", None)


def run_client_pipeline(
    client_id: str,
    day: str,
    clients_file: str,
    data_prefix: str,
    tracking_uri: str,
    artifact_root: str | None,
) -> dict[str, object]:
    """One `client_pipeline` partition in this (worker) process, with a local[1] Spark.

    Runs in a spawned ProcessPoolExecutor worker: the Spark session and the MLflow store are
    created once per worker process and reused by the next partitions it runs.
    """
    started = time.perf_counter()
    from dagster import DagsterInstance, Definitions, in_process_executor

    from bettercat_assets.jobs import PIPELINE_JOB, build_jobs
    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
    from bettercat_assets_tests.dagster_support import client_assets_def, day_config

    assets = client_assets_def(clients_file)
    defs = Definitions(
        assets=[assets],
        jobs=build_jobs(assets.partitions_def),
        executor=in_process_executor,
        resources={
            "clients": ClientsResource(clients_file=clients_file, data_prefix=data_prefix),
            "mlflow": MlflowResource(tracking_uri=tracking_uri, artifact_root=artifact_root),
            "spark": SparkResource(
                master="local[1]",
                spark_config={
                    "spark.driver.memory": "512m",
                    "spark.sql.shuffle.partitions": "1",
                    "spark.default.parallelism": "1",
                },
            ),
        },
    )
    job = defs.resolve_job_def(PIPELINE_JOB)
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            partition_key=client_id,
            instance=instance,
            raise_on_error=False,
            run_config=day_config(day),
        )
        failures = [
            f"{e.step_key}: {e.step_failure_data.error.message.strip()}"
            for e in result.all_events
            if e.is_step_failure
        ]
    return {
        "client_id": client_id,
        "success": result.success,
        "failures": failures,
        "pid": os.getpid(),
        "seconds": time.perf_counter() - started,
    }
