"""Running bench tasks as child processes: `child`, repeated measurements, logging, tables."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .machine import wait_until_quiet
from .rss import run_sampled
from .workspace import REPO, Workspace

#: a throughput run during which others used more cores than this is repeated once
MAX_OTHER_CORES = 0.5


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ChildError(RuntimeError):
    pass


def child(
    ws: Workspace,
    task: str,
    args: dict[str, Any],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    quiet_first: bool = False,
) -> dict[str, Any]:
    """Run `bench.child TASK` and return its result plus `_wall_s` and `_proc` (RSS, CPU)."""
    if quiet_first:
        wait_until_quiet(MAX_OTHER_CORES, timeout=20)
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{task}-", dir=ws.root))
    (tmp / "args.json").write_text(json.dumps({"root": str(ws.root), **args}, default=str))
    proc, stats, wall = run_sampled(
        [sys.executable, "-m", "bench.child", task, str(tmp / "args.json"), str(tmp / "out.json")],
        env or ws.env(),
        REPO,
        timeout,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise ChildError(f"bench child '{task}' failed (exit {proc.returncode}):\n{tail}")
    result = json.loads((tmp / "out.json").read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    result["_wall_s"] = wall
    result["_proc"] = stats
    return result


def best_of(runs: list[dict[str, Any]], key: str = "rows_per_s") -> dict[str, Any]:
    best = max(runs, key=lambda r: r[key])
    return {
        **best,
        "_runs": [{key: r[key], "other_cores": r["_proc"]["other_cores"]} for r in runs],
    }


def measured(
    ws: Workspace, task: str, args: dict[str, Any], repeats: int, *, retry_busy: bool = True
) -> dict[str, Any]:
    """A throughput measurement: `repeats` runs (one more if others were busy), best kept."""
    runs = []
    for _ in range(repeats):
        runs.append(child(ws, task, args, quiet_first=True))
    if retry_busy and min(r["_proc"]["other_cores"] for r in runs) > MAX_OTHER_CORES:
        log(f"{task}: other processes used >{MAX_OTHER_CORES} cores; measuring again")
        runs.append(child(ws, task, args, quiet_first=True))
    return best_of(runs)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)
