"""Benchmark section `text`: text clients through the `bettercat` CLI as fresh processes.

One generated catalogue (`--train` training products, `--categories` categories, a title and a
brand per product) is trained three ways: RandomForest on numbers + title + brand (default
model), the same features with `model: {kind: linear}`, and RandomForest on the numbers only
(the same files, text columns ignored). Reported, all measured in this run:

* top-5 / top-1 on the training's held-out split, and training wall time (fresh process);
* `bettercat predict --timings` at `--small` and `--large` products (the same prediction file
  for every client: a client reads only its own features), marginal products/s and its ratio
  to numeric-only, with the breakdown;
* the registered compact model's size (what the driver downloads and ships) and the peak RSS
  of a Spark Python worker above an idle Python with pandas, pyarrow, scikit-learn and mlflow.

    .venv/bin/python -m bench.text [--train 50000 --categories 100 --large 1000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.runner import log
from bench.workers import WorkerSampler, baseline_rss_mb
from bench.workspace import Workspace

NUMBERS = ["price", "weight_g", "n_images", "color_code", "size_code", "discount_pct"]
TEXT = "[{name: title, kind: text}, {name: brand, kind: categorical}]"
CLIENTS = {
    "numeric_rf": None,
    "text_rf": "",
    "text_linear": "    model: {kind: linear}\n",
}


def clients_yaml(train: int, categories: int) -> str:
    products = int(round(train / 0.8))
    sample = f"    sample_data: {{products: {products}, categories: {categories}}}\n"
    out = "clients:\n"
    for cid, extra in CLIENTS.items():
        features = NUMBERS if extra is None else NUMBERS + ["TEXT"]
        listed = ", ".join(features).replace("TEXT", TEXT[1:-1])
        out += f"  - client_id: {cid}\n    features: [{listed}]\n{sample}{extra or ''}"
    return out


def bettercat(ws: Workspace, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run the CLI as a fresh process; (wall seconds, the completed process)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("bettercat")), *args],
        env=ws.env(),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"bettercat {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc


def share_catalogue(ws: Workspace) -> pd.DataFrame:
    """Every client trains on text_rf's generated file (numeric_rf ignores the text columns)."""
    source = ws.layout.train_file("text_rf")
    for cid in CLIENTS:
        target = ws.layout.train_file(cid)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target != source:
            target.write_bytes(source.read_bytes())
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def write_predictions(ws: Workspace, catalogue: pd.DataFrame, rows: int) -> None:
    """A prediction file of `rows` products resampled from the catalogue, for every client."""
    rng = np.random.default_rng(7)
    picked = catalogue.iloc[rng.integers(0, len(catalogue), rows)].drop(columns="category_id")
    picked = picked.assign(product_id=[f"P{i:08d}" for i in range(rows)])
    first = ws.layout.predict_file("text_rf")
    first.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(first, "wt", encoding="utf-8", newline="", compresslevel=1) as fh:
        picked.to_csv(fh, index=False)
    for cid in CLIENTS:
        target = ws.layout.predict_file(cid)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target != first:
            target.write_bytes(first.read_bytes())


def train_all(ws: Workspace, out: dict[str, dict[str, Any]], save) -> dict[str, dict[str, Any]]:
    from mlflow import MlflowClient

    for cid in CLIENTS:
        log(f"text: training {cid}")
        wall, _ = bettercat(ws, "train", "--client-id", cid)
        client = MlflowClient(ws.settings.tracking_uri)
        mv = client.get_model_version_by_alias(f"{cid}_model", "champion")
        metrics = client.get_run(mv.run_id).data.metrics
        out[cid] = {
            "train_wall_s": wall,
            "fit_s": metrics.get("fit_seconds"),
            "top5": metrics.get("top5_accuracy"),
            "top1": metrics.get("accuracy"),
            "model_mb": compact_size_mb(ws, cid, int(mv.version)),
        }
        log(f"text: {cid} {out[cid]}")
        save()
    return out


def compact_size_mb(ws: Workspace, cid: str, version: int) -> float:
    import tempfile

    from bettercat_assets.core.model.store import download_compact

    with tempfile.TemporaryDirectory() as tmp:
        local = download_compact(ws.settings, f"{cid}_model", version, tmp)
        return sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) / 2**20


def predict(ws: Workspace, cid: str) -> dict[str, Any]:
    with WorkerSampler() as sampler:
        wall, proc = bettercat(ws, "predict", "--client-id", cid, "--timings")
    timings: dict[str, Any] = {}
    for line in reversed(proc.stderr.strip().splitlines()):
        if line.startswith("{"):
            timings = json.loads(line)
            break
    return {"wall_s": wall, "timings": timings, "worker_peak_mb": sampler.peak_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bench section: text")
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--categories", type=int, default=100)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--root", type=Path, default=Path("/tmp/bettercat-bench-text"))
    parser.add_argument("--out", type=Path, default=Path("bench/text_results.json"))
    parser.add_argument(
        "--predict-only",
        default=None,
        help="comma-separated clients: only their predictions, in an existing workspace",
    )
    args = parser.parse_args(argv)
    ws = Workspace(args.root)
    if args.predict_only:
        return predict_only(ws, args)
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.clients_file.write_text(clients_yaml(args.train, args.categories), encoding="utf-8")
    log("text: generating the catalogue")
    bettercat(ws, "generate-data", "--client-id", "text_rf")
    catalogue = share_catalogue(ws)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}

    def save() -> None:  # after every step: a long run that is stopped keeps what it measured
        args.out.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")

    results["training"] = {}
    train_all(ws, results["training"], save)
    results["baseline_rss_mb"] = baseline_rss_mb()
    for size in (args.small, args.large):
        write_predictions(ws, catalogue, size)
        for cid in CLIENTS:
            log(f"text: predict {cid} at {size}")
            results.setdefault("predict", {}).setdefault(cid, {})[str(size)] = predict(ws, cid)
            save()
    print(render(results, args.small, args.large))
    return 0


def predict_only(ws: Workspace, args: argparse.Namespace) -> int:
    """Predictions of already trained clients (e.g. while another client still trains)."""
    catalogue = pd.read_csv(ws.layout.train_file("text_rf"), dtype=str, keep_default_na=False)
    results: dict[str, Any] = {"baseline_rss_mb": baseline_rss_mb(), "predict": {}}
    for size in (args.small, args.large):
        write_predictions(ws, catalogue, size)
        for cid in args.predict_only.split(","):
            log(f"text: predict {cid} at {size}")
            results["predict"].setdefault(cid, {})[str(size)] = predict(ws, cid)
            args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


def render(results: dict[str, Any], small: int, large: int) -> str:
    """The RESULTS.md rows of this section."""
    base = results["baseline_rss_mb"]
    numeric = results["predict"]["numeric_rf"]
    numeric_rate = (large - small) / (numeric[str(large)]["wall_s"] - numeric[str(small)]["wall_s"])
    lines = [
        "| client | top-5 | top-1 | train wall s (fit s) | model MB | predict "
        f"{large:,} wall s | marginal products/s | ratio to numeric | worker peak above idle MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cid, trained in results["training"].items():
        runs = results["predict"][cid]
        rate = (large - small) / (runs[str(large)]["wall_s"] - runs[str(small)]["wall_s"])
        lines.append(
            f"| {cid} | {trained['top5']:.3f} | {trained['top1']:.3f} | "
            f"{trained['train_wall_s']:.0f} ({trained['fit_s']:.0f}) | {trained['model_mb']:.1f} | "
            f"{runs[str(large)]['wall_s']:.1f} | {rate:,.0f} | {rate / numeric_rate:.2f} | "
            f"{runs[str(large)]['worker_peak_mb'] - base:.0f} |"
        )
    breakdown = {cid: results["predict"][cid][str(large)]["timings"] for cid in CLIENTS}
    return "\n".join(lines) + "\n\nbreakdown at the large size (s):\n" + json.dumps(breakdown)


if __name__ == "__main__":
    raise SystemExit(main())
