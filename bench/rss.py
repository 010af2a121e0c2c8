"""Peak memory of a process tree (driver JVM + Python driver + Python workers), from /proc."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces or parentheses: ppid follows the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds used so far by `root` (default: this process), its live descendants and
    the children they have reaped."""
    total = 0
    for pid in process_tree(root or os.getpid()):
        try:
            fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def _comm(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


def _kind(pid: int, root: int) -> str:
    comm = _comm(pid)
    if comm == "java":
        return "jvm"
    return "python_driver" if pid == root else "python_workers"


@dataclass
class TreeSampler:
    """Samples the summed VmRSS of `root` and its descendants every `interval` seconds."""

    root: int
    interval: float = 0.2
    peak_kb: int = 0
    peak_by_kind_kb: dict[str, int] = field(default_factory=dict)
    max_processes: int = 0
    samples: int = 0
    cpu_ticks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        pids = process_tree(self.root)
        by_kind: dict[str, int] = {}
        for pid in pids:
            ticks = _cpu_ticks(pid)
            if ticks:
                self.cpu_ticks[pid] = max(ticks, self.cpu_ticks.get(pid, 0))
            kind = _kind(pid, self.root)
            by_kind[kind] = by_kind.get(kind, 0) + _status_kb(pid, "VmRSS:")
        total = sum(by_kind.values())
        self.samples += 1
        self.max_processes = max(self.max_processes, len(pids))
        if total > self.peak_kb:
            self.peak_kb = total
            self.peak_by_kind_kb = by_kind

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / CLK_TCK

    def as_dict(self) -> dict[str, object]:
        return {
            "cpu_s": round(self.cpu_seconds, 2),
            "peak_rss_mb": round(self.peak_kb / 1024, 1),
            "peak_by_kind_mb": {k: round(v / 1024, 1) for k, v in self.peak_by_kind_kb.items()},
            "max_processes": self.max_processes,
            "samples": self.samples,
        }


def run_sampled(
    cmd: list[str], env: dict[str, str], cwd: str | os.PathLike[str], timeout: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, object], float]:
    """Run `cmd`, sampling its process tree's RSS and CPU; returns (process, stats, wall s).

    stats also holds `other_cores`: cores other people's processes used meanwhile.
    """
    from .machine import BusyCores

    started = time.perf_counter()
    with BusyCores() as busy:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with TreeSampler(proc.pid) as sampler:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
    wall = time.perf_counter() - started
    stats = sampler.as_dict()
    stats["busy_cores"] = round(busy.cores, 2)
    stats["other_cores"] = round(max(0.0, busy.cores - sampler.cpu_seconds / wall), 2)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), stats, wall
