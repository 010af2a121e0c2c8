"""The machine the bench ran on, and how busy it was with other people's work."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time


def _proc_field(path: str, key: str, default: str) -> str:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def machine_info() -> dict[str, object]:
    import numba
    import pyarrow
    import pyspark
    import sklearn

    cpu = _proc_field("/proc/cpuinfo", "model name", "?")
    mem_gb = int(_proc_field("/proc/meminfo", "MemTotal", "0 kB").split()[0]) / 2**20
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30
        ).stderr.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        java = "?"
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(mem_gb, 1),
        "cpu": cpu,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "sklearn": sklearn.__version__,
        "pyspark": pyspark.__version__,
        "pyarrow": pyarrow.__version__,
        "numba": numba.__version__,
        "java": java,
    }


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def cpu_busy(seconds: float = 1.0) -> float:
    """Cores in use (all processes) averaged over `seconds`."""
    b0, t0 = _cpu_jiffies()
    time.sleep(seconds)
    b1, t1 = _cpu_jiffies()
    return (os.cpu_count() or 1) * (b1 - b0) / max(t1 - t0, 1)


def wait_until_quiet(max_busy: float = 0.5, timeout: float = 60.0) -> float:
    """Wait (up to `timeout`) until others use fewer than `max_busy` cores; returns the last
    reading."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy()
    while busy > max_busy and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    return busy


class BusyCores:
    """Cores in use by all processes between `__enter__` and `__exit__`."""

    def __enter__(self) -> BusyCores:
        self._busy0, self._total0 = _cpu_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        busy1, total1 = _cpu_jiffies()
        ncpu = os.cpu_count() or 1
        self.cores = ncpu * (busy1 - self._busy0) / max(total1 - self._total0, 1)


def load_average() -> float:
    return os.getloadavg()[0]
