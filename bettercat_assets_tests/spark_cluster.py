"""A standalone Spark cluster on loopback for tests: one master and N workers, each its own JVM.

The pip pyspark has no `sbin/start-master.sh`; the daemons are started in the foreground with
the installed pyspark's `bin/spark-class`, each in its own process group (`start_process`), so
stopping a group also stops the executors a worker launched and their Python workers.

Every worker runs this virtualenv's Python for PySpark (`PYSPARK_PYTHON`) and binds to
127.0.0.1 (`SPARK_LOCAL_IP`), like the driver of the run under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pyspark

from bettercat_assets_tests.process_support import (
    ManagedProcess,
    free_port,
    start_process,
    stop_all,
    wait_until,
)

SPARK_HOME = Path(pyspark.__file__).resolve().parent
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 120


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass
class SparkCluster:
    """Addresses of a running cluster and its daemons."""

    master_url: str
    master_ui: str
    worker_uis: list[str]
    processes: list[ManagedProcess] = field(default_factory=list)

    def master_state(self) -> dict:
        """The master's JSON API: workers, active and completed applications."""
        return get_json(f"{self.master_ui}/json/")

    def worker_state(self, ui: str) -> dict:
        """A worker's JSON API: its id and the executors it runs or ran."""
        return get_json(f"{ui}/json/")

    def process_groups(self) -> list[int]:
        return [p.popen.pid for p in self.processes]

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until every worker has registered with the master (ALIVE)."""
        wait_until(
            lambda: _workers_registered(self, len(self.worker_uis)),
            timeout,
            f"{len(self.worker_uis)} workers registered with {self.master_url}",
            processes=self.processes,
        )


def cluster_env() -> dict[str, str]:
    """Environment of the daemons (and of the executors they launch)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_MASTER")}
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP=HOST,
        PYSPARK_PYTHON=sys.executable,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def _workers_registered(cluster: SparkCluster, count: int) -> bool:
    try:
        state = cluster.master_state()
    except OSError:
        return False
    return sum(w.get("state") == "ALIVE" for w in state.get("workers", [])) >= count


@contextlib.contextmanager
def spark_cluster(
    root: Path, workers: int = 2, cores: int = 1, memory: str = "1g", wait: bool = True
) -> Iterator[SparkCluster]:
    """Start a master and `workers` workers under `root`; stop every process group on exit.

    With `wait=False` it yields as soon as the JVMs are started (call `wait_ready()` later), so
    the caller can prepare something else meanwhile.
    """
    spark_class = SPARK_HOME / "bin" / "spark-class"
    env = cluster_env()
    port, ui_port = free_port(), free_port()
    cluster = SparkCluster(
        master_url=f"spark://{HOST}:{port}", master_ui=f"http://{HOST}:{ui_port}", worker_uis=[]
    )
    try:
        cluster.processes.append(
            start_process(
                "spark-master",
                [spark_class, "org.apache.spark.deploy.master.Master"]
                + ["--host", HOST, "--port", str(port), "--webui-port", str(ui_port)],
                env=env,
                log=root / "logs" / "master.log",
                cwd=root,
            )
        )
        for index in range(workers):
            worker_ui_port = free_port()
            work_dir = root / f"worker-{index}"
            work_dir.mkdir(parents=True, exist_ok=True)
            cluster.processes.append(
                start_process(
                    f"spark-worker-{index}",
                    [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url]
                    + ["--host", HOST, "--cores", str(cores), "--memory", memory]
                    + ["--webui-port", str(worker_ui_port), "--work-dir", str(work_dir)],
                    env=env,
                    log=root / "logs" / f"worker-{index}.log",
                    cwd=root,
                )
            )
            cluster.worker_uis.append(f"http://{HOST}:{worker_ui_port}")
        if wait:
            cluster.wait_ready()
        yield cluster
    finally:
        stop_all(cluster.processes)


def live_members(pgids: set[int]) -> list[str]:
    """Processes (not zombies) of the given process groups, as "pid name" strings."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) in pgids:
                found.append(f"{proc.pid} {proc.info['name']}")
    return found


def wait_until_gone(pgids: set[int], timeout: float = 30) -> list[str]:
    """Wait for every process of the groups to exit; what is still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := live_members(pgids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def event_log_lines(events_dir: Path, app_id: str) -> list[str]:
    """The JSON lines of an application's event log: one file `<app id>`, or Spark 4's rolling
    layout, a folder `eventlog_v2_<app id>` of `events_<n>_<app id>` files."""
    rolling = events_dir / f"eventlog_v2_{app_id}"
    if rolling.is_dir():
        parts = sorted(rolling.glob("events_*"), key=lambda p: int(p.name.split("_")[1]))
    else:
        parts = [events_dir / app_id]
    return [line for part in parts for line in part.read_text().splitlines() if line.strip()]


def tasks_per_executor(events_dir: Path, app_id: str) -> dict[str, int]:
    """Successful tasks per executor id, from the application's Spark event log."""
    counts: dict[str, int] = {}
    for line in event_log_lines(events_dir, app_id):
        event = json.loads(line)
        if event.get("Event") != "SparkListenerTaskEnd":
            continue
        if event.get("Task End Reason", {}).get("Reason") != "Success":
            continue
        executor = event["Task Info"]["Executor ID"]
        counts[executor] = counts.get(executor, 0) + 1
    return counts
