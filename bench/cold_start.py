"""Section `cold`: `bettercat predict` for one 10k-product client from a cold process.

The CLI as a user runs it, in a fresh process each time, with `--timings` for the breakdown
(imports, Spark start and how much of it was hidden behind the imports, model shipping, input
preparation, the scoring job with its worker start, checks, swap). Python worker start is also
measured on its own: a one-row `mapInPandas` on a fresh session, minus the same job again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bettercat_assets.core.data.generate import TRAIN_SHARE

from .rss import run_sampled
from .workers import WorkerSampler, baseline_rss_mb
from .workspace import REPO, Workspace, project_defaults

GOAL_COLD_S = 12.0
CLIENT = "cold_client"
#: Products `bettercat predict` scores: the client's prediction file (its catalogue is 5x
#: that, the rest being its training file).
PRODUCTS = 10_000
CATALOGUE = round(PRODUCTS / (1 - TRAIN_SHARE))

WORKER_START_SNIPPET = """
import json, sys, time
from bettercat_assets.core.spark.session import build_spark_session
spark = build_spark_session(master="local[2]")
def touch(batches):
    import bettercat_assets.core.scoring.batch_scorer  # what a scoring worker imports
    yield from batches
df = spark.range(1).selectExpr("id")
times = []
for _ in range(2):
    t = time.perf_counter(); df.mapInPandas(touch, "id long").collect(); times.append(time.perf_counter() - t)
print(json.dumps({"first_job_s": times[0], "second_job_s": times[1]}))
"""


def prepare(ws: Workspace) -> None:
    """A client with the project's default model settings, trained through the CLI."""
    doc = {
        "defaults": project_defaults(),
        "clients": [
            {
                "client_id": CLIENT,
                "features": [f"x{i}" for i in range(10)],
                "sample_data": {"products": CATALOGUE, "categories": 20},
            }
        ],
    }
    ws.clients_file.parent.mkdir(parents=True, exist_ok=True)
    ws.clients_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = ws.env()
    bettercat = str(Path(sys.executable).with_name("bettercat"))
    for args in (["generate-data"], ["train", "--client-id", CLIENT]):
        subprocess.run([bettercat, *args], env=env, cwd=REPO, check=True, capture_output=True)


def predict_once(ws: Workspace) -> dict[str, Any]:
    bettercat = str(Path(sys.executable).with_name("bettercat"))
    cmd = [bettercat, "predict", "--client-id", CLIENT, "--timings"]
    with WorkerSampler() as workers:
        proc, stats, wall = run_sampled(cmd, ws.env(), REPO, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bettercat predict failed: {proc.stderr[-2000:]}")
    timings = json.loads(proc.stderr.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "timings": timings, "tree": stats, "workers": workers}


def worker_start(ws: Workspace) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER_START_SNIPPET],
        env=ws.env(),
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    times = json.loads(out.stdout.strip().splitlines()[-1])
    return {**times, "worker_start_s": times["first_job_s"] - times["second_job_s"]}


def run_cold_start(root: Path, repeats: int = 2) -> dict[str, Any]:
    ws = Workspace(root / "cold")
    prepare(ws)
    runs = [predict_once(ws) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["wall_s"])
    baseline = baseline_rss_mb()
    return {
        "products": PRODUCTS,
        "wall_s": best["wall_s"],
        "walls_s": [r["wall_s"] for r in runs],
        "timings": best["timings"],
        "tree": best["tree"],
        **best["workers"].as_dict(baseline),
        **worker_start(ws),
    }
