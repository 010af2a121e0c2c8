"""Monitoring's cost: `python -m bench.monitoring [--products N] [--clients N] [--repeats N]`.

1. Scoring overhead: one client (100 classes, 20 features, 50k training rows, default model)
   trained once; then `bettercat predict --timings` as fresh processes, alternately with
   `monitoring: {enabled: true}` and `{enabled: false}` (same model, same file), and the
   ratio of their wall times (process start to exit) and of their `score_and_write + checks`,
   pair by pair.
2. Fleet view: `bettercat fleet` as a fresh process over N clients, each with a registered
   model (gate results, champion alias) and a prediction folder with its lineage and
   monitoring summary, as scoring writes them.

`--worker-cpu` (in-process) splits a Spark worker's CPU between scoring and counting;
`--strings N` (in-process) times counting N titles and brands (`core/monitoring/strings.py`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .data import write_bench_client
from .workspace import Workspace, write_clients_file

CLIENT = "monitored"


def _bettercat(ws: Workspace, clients_file: Path, *args: str) -> tuple[float, str, str]:
    env = ws.env(BETTERCAT_CLIENTS_FILE=str(clients_file))
    start = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("bettercat")), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stdout, done.stderr


def _timings(stderr: str) -> dict[str, float]:
    for line in reversed(stderr.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no timings in: {stderr[-500:]}")


def scoring_overhead(root: Path, products: int, repeats: int) -> dict[str, object]:
    ws = Workspace(root / "scoring")
    data = write_bench_client(ws.layout, CLIENT, train_rows=62_500, predict_rows=products)
    files = {}
    for name, enabled in (("on", True), ("off", False)):
        entry = {"client_id": CLIENT, "features": data.features, "monitoring": {"enabled": enabled}}
        files[name] = write_clients_file(ws.root / f"clients-{name}.yaml", [entry])
    _bettercat(ws, files["on"], "train", "--client-id", CLIENT)
    _bettercat(ws, files["off"], "predict", "--client-id", CLIENT)  # warm the page cache
    pairs = []
    for _ in range(repeats):
        run = {}
        for name in ("on", "off"):
            wall, _, err = _bettercat(
                ws, files[name], "predict", "--client-id", CLIENT, "--timings"
            )
            t = _timings(err)
            run[name] = {"wall": wall, "pass": t["score_and_write"] + t.get("checks", 0.0), **t}
        pairs.append(run)
    wall = statistics.median(p["on"]["wall"] / p["off"]["wall"] for p in pairs)
    scoring = statistics.median(p["on"]["pass"] / p["off"]["pass"] for p in pairs)
    return {"products": products, "wall_ratio": wall, "pass_ratio": scoring, "pairs": pairs}


def _fleet_workspace(root: Path, clients: int) -> tuple[Workspace, Path]:
    """N clients with a registered model each and a scored folder each (no training)."""
    import mlflow

    from bettercat_assets.core.tracking import runs as tracking

    ws = Workspace(root / "fleet")
    ws.apply_env()
    entries = [{"client_id": f"c{i:04d}", "features": ["x"]} for i in range(clients)]
    path = write_clients_file(ws.clients_file, entries)
    client = tracking.mlflow_client(ws.settings)
    mlflow.set_experiment("fleet-bench")
    with mlflow.start_run() as run:
        source = f"runs:/{run.info.run_id}/model"
    now = datetime.now(timezone.utc).isoformat()
    for i, entry in enumerate(entries):
        cid = entry["client_id"]
        name = f"{cid}_model"
        client.create_registered_model(name)
        for gate in ("passed", "failed" if i % 7 else "passed"):
            mv = client.create_model_version(
                name, source, run.info.run_id, tags={"gate_status": gate}
            )
        if i % 11:
            client.set_registered_model_alias(name, tracking.CHAMPION_ALIAS, "1")
        folder = ws.layout.predictions_dir(cid, datetime.now(timezone.utc).date())
        folder.mkdir(parents=True)
        (folder / "_lineage.json").write_text(json.dumps({"scored_at": now, "model_version": 1}))
        summary = {
            "model_version": int(mv.version),
            "drifted_features": ["x"] if i % 5 == 0 else [],
            "prediction_drifted": i % 13 == 0,
            "accuracy_dropped": i % 17 == 0,
            "numbers": {
                "monitor_estimated_top5": 0.9,
                "monitor_estimated_top5_drop": 0.01 * (i % 9),
            },
        }
        (folder / "_monitoring.json").write_text(json.dumps(summary))
    return ws, path


def fleet_time(root: Path, clients: int, repeats: int) -> dict[str, object]:
    ws, path = _fleet_workspace(root, clients)
    walls = []
    for _ in range(repeats):
        wall, out, _ = _bettercat(ws, path, "fleet", "--top", "5")
        walls.append(wall)
    return {"clients": clients, "wall_s": statistics.median(walls), "walls": walls, "head": out}


def worker_cpu(products: int, train_rows: int = 50_000, chunk: int = 4096) -> dict[str, object]:
    """In-process, labelled as such: CPU seconds a Spark worker spends scoring (compact forest
    + top-5 rows) and counting the monitoring profile, chunk by chunk as the workers do.
    CPU time is far less disturbed than wall time by other processes on a shared machine."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from sklearn.ensemble import RandomForestClassifier

    from bettercat_assets.core.model.forest_conversion import compact_from_sklearn
    from bettercat_assets.core.monitoring.reference import build_reference
    from bettercat_assets.core.monitoring.statistic import MonitorSpec, count_slice, merge_states
    from bettercat_assets.core.scoring.batch_scorer import top_k_batch

    from .data import class_labels, make_arrays

    X, y = make_arrays(train_rows, 20, 100)
    labels = class_labels(100)[y]
    forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=-1, random_state=0)
    forest.fit(X[: int(train_rows * 0.8)], labels[: int(train_rows * 0.8)])
    compact = compact_from_sklearn(forest)
    test = slice(int(train_rows * 0.8), None)
    profile = build_reference(
        {f"f{j}": X[:, j] for j in range(20)},
        compact.predict_proba(X[test].astype(np.float32)),
        compact.classes_,
        labels[test],
        10,
    )
    spec = MonitorSpec.of(profile)
    names = pa.array(compact.classes_.tolist(), type=pa.string())
    Xp, _ = make_arrays(products, 20, 100, stream=1000)
    Xp = Xp.astype(np.float32)
    ids = pd.Series([f"P-{i:09d}" for i in range(products)])
    scoring = monitoring = 0.0
    states = []
    for start in range(0, products, chunk):
        rows = Xp[start : start + chunk]
        t0 = time.process_time()
        proba = compact.predict_proba(rows)
        top_k_batch(ids.iloc[start : start + chunk], proba, names, 5, 1)
        t1 = time.process_time()
        states.append(count_slice(spec, rows, proba))
        if len(states) >= 16:
            states = [merge_states(states)]
        t2 = time.process_time()
        scoring += t1 - t0
        monitoring += t2 - t1
    return {
        "products": products,
        "scoring_cpu_s": scoring,
        "monitoring_cpu_s": monitoring,
        "ratio": monitoring / scoring,
        "label": "in-process, CPU seconds, one worker's loop",
    }


def strings_cpu(rows: int, repeats: int = 3) -> dict[str, object]:
    """In-process, labelled as such: CPU seconds (best of `repeats`) of counting `rows`
    generated titles (about a fifth with letters beyond ASCII) on the featurizer's word
    vocabulary, and as many brands on their top ten values, in 4,096-row chunks."""
    import numpy as np
    import pandas as pd

    from bettercat_assets.core.config.feature_specs import FeatureSpec, TextSettings
    from bettercat_assets.core.data import generate_text
    from bettercat_assets.core.features.fit import fit_features
    from bettercat_assets.core.monitoring import strings

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 50, rows)
    ids = np.array([f"c/d/i{i}" for i in range(50)])
    titles = np.array(generate_text.titles(labels, np.arange(50) % 5, ids, 1.0, rng), object)
    brands = np.array(generate_text.brands(labels, 50, 1.0, rng), dtype=object)
    titles[rng.random(rows) < 0.02] = None
    specs = (FeatureSpec(name="title", kind="text"),)
    frame = pd.DataFrame({"title": titles[:20_000]})
    known, lowercase = (
        fit_features(specs, frame, TextSettings(), False).export().word_vocabulary("title")
    )
    index = {v: i for i, v in enumerate(strings.top_values(brands, 10))}
    out: dict[str, object] = {"rows": rows, "label": "in-process, CPU seconds, best of runs"}
    for name, count in (
        ("text", lambda part: strings.word_measures(titles[part], known, lowercase)),
        ("categorical", lambda part: strings.category_counts(brands[part], index)),
    ):
        runs = []
        for _ in range(repeats):
            start = time.process_time()
            for first in range(0, rows, 4096):
                count(slice(first, first + 4096))
            runs.append(time.process_time() - start)
        out[f"{name}_cpu_s"] = min(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--worker-cpu", action="store_true", help="Only the in-process CPU split.")
    parser.add_argument("--strings", type=int, help="Only text/categorical counting of N rows.")
    args = parser.parse_args()
    if args.strings:
        print(json.dumps(strings_cpu(args.strings), indent=1), flush=True)
        return
    if args.worker_cpu:
        print(json.dumps(worker_cpu(args.products), indent=1), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        results = {}
        if not args.skip_fleet:
            results["fleet"] = fleet_time(Path(tmp), args.clients, args.repeats)
            print(json.dumps(results["fleet"], indent=1), flush=True)
        if not args.skip_scoring:
            results["scoring"] = scoring_overhead(Path(tmp), args.products, args.repeats)
            print(json.dumps(results["scoring"], indent=1), flush=True)


if __name__ == "__main__":
    main()
