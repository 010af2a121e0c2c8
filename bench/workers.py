"""Peak RSS of Spark's Python workers, against an idle Python with the heavy libraries loaded.

A worker is any process started as `python -m pyspark.daemon` / `pyspark.worker` (the daemon
forks the workers, so they share its command line). The baseline is a fresh Python that has
imported pandas, pyarrow, scikit-learn and mlflow and done nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field

import psutil

WORKER_MARKERS = ("pyspark.daemon", "pyspark.worker")
BASELINE_SNIPPET = (
    "import pandas, pyarrow, sklearn, mlflow, psutil; print(psutil.Process().memory_info().rss)"
)
#: Goal: a worker at most this far above the baseline.
GOAL_ABOVE_BASELINE_MB = 50


def is_worker(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(marker in cmdline for marker in WORKER_MARKERS)


def baseline_rss_mb() -> float:
    """RSS of an idle Python that imported pandas, pyarrow, scikit-learn and mlflow."""
    out = subprocess.run(
        [sys.executable, "-c", BASELINE_SNIPPET], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1]) / 2**20


@dataclass
class WorkerSampler:
    """Samples the Python workers among this process's descendants (the runs, CLIs and Spark
    it started, not other people's); keeps the largest single-worker RSS."""

    root: int = field(default_factory=os.getpid)
    interval: float = 0.25
    peak_mb: float = 0.0
    workers_seen: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        try:
            descendants = psutil.Process(self.root).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for proc in descendants:
            if not is_worker(proc):
                continue
            try:
                rss = proc.memory_info().rss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.workers_seen.add(proc.pid)
            self.peak_mb = max(self.peak_mb, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> WorkerSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def as_dict(self, baseline_mb: float) -> dict[str, float | int]:
        return {
            "worker_peak_rss_mb": round(self.peak_mb, 1),
            "baseline_rss_mb": round(baseline_mb, 1),
            "above_baseline_mb": round(self.peak_mb - baseline_mb, 1),
            "workers_seen": len(self.workers_seen),
        }
