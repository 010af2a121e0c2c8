"""The bettercat bench: `python -m bench.run [--quick] [--out bench/out]`.

Prints a markdown table of goals and measured ratios and writes `<out>/results.json` and
`<out>/RESULTS.md` (`--update-results` also writes bench/RESULTS.md). Every measurement runs in
a fresh child process (`bench.child`) whose whole process tree (Python driver, JVM, Python
workers) is sampled for RSS and CPU; CPU used meanwhile by other people's processes is
recorded as `other_cores`, and throughput runs are repeated when it was high.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import (
    cold_start,
    fleet_serving,
    footprint,
    overhead,
    predict_cli,
    scale,
    scale_out,
    serving,
    tenants,
)
from .data import DEFAULT_NOISE, feature_names
from .machine import machine_info
from .runner import child, log, markdown_table, measured
from .workspace import REPO, Workspace, bench_client

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "products": 1_000_000,
        "train_rows": 62_500,  # train_model keeps 20% for its test split: the fit sees 50k
        "classes": 100,
        "features": 20,
        "backfill_clients": 50,
        "scale_clients": 1000,
        "repeats": 2,
        "levers": "full",
        "variants": True,
        "tenants": [40, 200],
        "fleet": {"clients": 1000, "requests": 12000, "forests": 40},
    },
    # the smoke test's sizes: every code path, seconds not minutes
    "tiny": {
        "products": 4000,
        "train_rows": 3000,
        "classes": 10,
        "features": 6,
        "backfill_clients": 2,
        "scale_clients": 30,
        "repeats": 1,
        "levers": "quick",
        "variants": True,
        "tenants": [3],
        "scale_out": False,
        "fleet": {"clients": 20, "requests": 300, "forests": 3},
    },
    "quick": {
        "products": 200_000,
        "train_rows": 62_500,
        "classes": 100,
        "features": 20,
        "backfill_clients": 10,
        "scale_clients": 1000,
        "repeats": 1,
        "levers": "none",
        "variants": False,
        "tenants": [40],
        "scale_out": False,
        "fleet": {"clients": 1000, "requests": 6000, "forests": 20},
    },
}
GOAL_OURS_OVER_LIMIT = 0.8
GOAL_PEAK_RSS_MB = 3 * 1024
CLIENT_ID = "bench_scoring"


# --------------------------------------------------------------------------- sections


def section_scoring(ws: Workspace, cfg_json: dict, sizes: dict, results: dict) -> None:
    version = results["prepare"]["version"]
    reps = sizes["repeats"]
    log("1. LIMIT (plain pyarrow + sklearn, 2 processes)")
    limit_sk = measured(ws, "limit", {"client": cfg_json, "kind": "sklearn"}, reps)
    log(f"   {limit_sk['rows_per_s']:,.0f} rows/s")
    log("1. LIMIT with the compact model (same script, CompactForest instead of sklearn)")
    limit_cf = measured(ws, "limit", {"client": cfg_json, "kind": "compact"}, reps)
    log(f"   {limit_cf['rows_per_s']:,.0f} rows/s")
    log("1. OURS (predict_categories, local[2], fresh session)")
    ours = measured(ws, "ours", {"client": cfg_json}, reps)
    log(f"   {ours['rows_per_s']:,.0f} rows/s; warm {ours.get('warm_rows_per_s', 0):,.0f}")
    log("1. SEED (broadcast sklearn, argsort, pandas repeat)")
    seed = measured(ws, "seed", {"client": cfg_json, "version": version}, 1, retry_busy=False)
    log(f"   {seed['rows_per_s']:,.0f} rows/s")
    results["scoring"] = {
        "limit_sklearn": limit_sk,
        "limit_compact": limit_cf,
        "ours": ours,
        "seed": seed,
    }


def section_levers(ws: Workspace, cfg_json: dict, which: str, results: dict) -> None:
    from dataclasses import asdict

    from .levers import LADDER, QUICK_LADDER

    ladder = LADDER if which == "full" else QUICK_LADDER
    repeats = 2 if which == "full" else 1  # best of 2: the machine is shared
    version = results["prepare"]["version"]
    rows = []
    for name, lever, against in ladder:
        log(f"levers: {name}")
        r = measured(
            ws, "lever", {"client": cfg_json, "version": version, "lever": asdict(lever)}, repeats
        )
        rows.append({"name": name, "against": against, **r})
        log(f"   {r['rows_per_s']:,.0f} rows/s (other cores {r['_proc']['other_cores']})")
    results["levers"] = rows


def section_footprint(ws: Workspace, cfg_json: dict, sizes: dict, results: dict) -> None:
    version = results["prepare"]["version"]
    log("2. compact model RSS in a fresh process")
    results["footprint"] = {
        "compact_rss": child(ws, "compact_rss", {"client": cfg_json, "version": version})
    }
    if sizes["variants"]:
        for name, override in footprint.VARIANTS.items():
            log(f"2. sklearn {name}")
            results["footprint"][name] = child(
                ws, "variant", {"client": cfg_json, "override": override}
            )


def section_overhead(ws: Workspace, sizes: dict, results: dict) -> None:
    env = ws.env()
    log("4. fixed costs: imports, MLflow, Dagster")
    base = overhead.time_python("pass", env)
    imports = overhead.time_python("import dagster, mlflow, sklearn, pandas", env)
    fixed = child(ws, "fixed_costs", {})
    fixed["python_start_s"] = base
    fixed["imports_s"] = imports - base
    m = sizes["backfill_clients"]
    log(f"4. backfill of {m} tiny clients + 1 broken through Dagster")
    overhead.write_backfill_clients(ws, m)
    ids = overhead.tiny_client_ids(m)
    order = [*ids[: m // 2], overhead.BROKEN_CLIENT, *ids[m // 2 :]]
    back = child(ws, "backfill", {"client_ids": order}, env=ws.env())
    results["overhead"] = {"fixed": fixed, "backfill": back}
    log(f"   mean {back['mean_client_s']:.2f} s/client; failed: {back['failed']}")


def section_scale(ws: Workspace, sizes: dict, results: dict) -> None:
    n = sizes["scale_clients"]
    path = scale.write_many_clients(ws, n)
    env = ws.env(BETTERCAT_CLIENTS_FILE=str(path))
    log(f"5. import bettercat_assets.definitions with {n} clients")
    import_walls = []
    import_inner = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", scale.IMPORT_SNIPPET],
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        import_walls.append(time.perf_counter() - t0)
        import_inner.append(float(out.stdout.split()[0]))
    # what the import is made of: the libraries, and validating the 1,000-client file
    libs = overhead.time_python("import dagster, mlflow, sklearn, pandas", env)
    base = overhead.time_python("pass", env)
    out = subprocess.run(
        [sys.executable, "-c", scale.LOAD_CLIENTS_SNIPPET],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    load_clients_s = float(out.stdout.split()[0])
    log(f"5. sensor tick over {n} registered_model events")
    tick = child(ws, "sensor", {}, env=env)
    results["scale"] = {
        "clients": n,
        "import_definitions_s": min(import_inner),
        "import_definitions_runs_s": import_inner,
        "process_wall_s": min(import_walls),
        "libraries_import_s": libs - base,
        "load_clients_s": load_clients_s,
        "sensor": tick,
    }


# --------------------------------------------------------------------------- report


def section_tenants(ws: Workspace, sizes: dict, results: dict) -> None:
    results["tenants"] = []
    for n in sizes["tenants"]:
        log(f"6. tenants: Materialize all over {n} tiny clients through dagster dev")
        results["tenants"].append(tenants.run_tenants(n, ws.root))
        log(f"   {results['tenants'][-1]}")


def section_scale_out(ws: Workspace, cfg_json: dict, results: dict) -> None:
    log(f"9. scale out: category_predictions through the asset path at {scale_out.SIZES}")
    results["scale_out"] = scale_out.run_scale_out(ws, cfg_json, child)
    for r in results["scale_out"]["runs"]:
        log(
            f"   {r['products']:,}: {r['peak_by_kind_mb']}, {r['products_per_s'] or 0:,.0f} products/s"
        )


def section_predict_cli(ws: Workspace, cfg_json: dict, sizes: dict, results: dict) -> None:
    products = sizes["products"]
    log(f"11. bettercat predict --timings at {predict_cli.SMALL:,} and {products:,} products")

    def limit() -> dict[str, Any]:
        return child(ws, "limit", {"client": cfg_json, "kind": "sklearn"}, quiet_first=True)

    out = predict_cli.run_predict_cli(ws, cfg_json, limit, products, sizes["repeats"])
    (ws.root / "scale_out_rows.txt").unlink(missing_ok=True)  # section 9 rewrites its file
    results["predict_cli"] = out
    log(
        f"   checks {out['checks_share']:.1%} of score_and_write; "
        f"{out['over_sklearn']:.2f}x sklearn; worker {out['worker_above_baseline_mb']:+.0f} MB"
    )


def section_cold(ws: Workspace, results: dict) -> None:
    log(f"7. cold start: bettercat predict, {cold_start.PRODUCTS:,} products, fresh processes")
    results["cold"] = cold_start.run_cold_start(ws.root)
    log(f"   {results['cold']['wall_s']} s: {results['cold']['timings']}")


def _fmt(v: float | None, unit: str = "", nd: int = 2) -> str:
    if v is None:
        return "n/a"
    if unit == "rows/s":
        return f"{v:,.0f} rows/s"
    return f"{v:.{nd}f}{(' ' + unit) if unit else ''}"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**NOT met**")


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """[section, measure, value, goal, status, note] rows from whatever sections ran."""
    rows: list[list[str]] = []
    sc = results.get("scoring")
    if sc:
        ours, lim, limc, seed = sc["ours"], sc["limit_sklearn"], sc["limit_compact"], sc["seed"]
        ratio = ours["rows_per_s"] / lim["rows_per_s"]
        ratio_c = ours["rows_per_s"] / limc["rows_per_s"]
        incl = ours["rows"] / (ours["wall_s"] + ours["session_s"])
        fixed = ours["wall_s"] - ours.get("warm_wall_s", ours["wall_s"])
        note = f"limit {_fmt(lim['rows_per_s'], 'rows/s')} vs ours {_fmt(ours['rows_per_s'], 'rows/s')}"
        if ratio < GOAL_OURS_OVER_LIMIT:
            note += (
                f"; ours spends {fixed:.1f} s starting workers and loading the model "
                f"(first minus warm run), Spark session start {ours['session_s']:.1f} s excluded"
            )
        rows += [
            ["1 scoring", "ours / limit (sklearn), no session start", f"{ratio:.2f}", ">= 0.8", _status(ratio >= GOAL_OURS_OVER_LIMIT), note],
            ["1 scoring", "same, by CPU time (robust to other load)", f"{lim['cpu_s'] / ours['cpu_s']:.2f}", "info", "", f"CPU s for {ours['rows']:,} rows: limit {lim['cpu_s']:.1f}, ours {ours['cpu_s']:.1f} (warm {ours.get('warm_cpu_s', 0):.1f}); others used {ours['_proc']['other_cores']:.2f} / {lim['_proc']['other_cores']:.2f} cores during ours / limit"],
            ["1 scoring", "ours / limit with the compact model", f"{ratio_c:.2f}", "info", "", f"limit (compact) {_fmt(limc['rows_per_s'], 'rows/s')}: the Spark overhead proper"],
            ["1 scoring", "ours / seed", f"{ours['rows_per_s'] / seed['rows_per_s']:.2f}", "info", "", f"seed {_fmt(seed['rows_per_s'], 'rows/s')}"],
            ["1 scoring", "ours incl. session start", _fmt(incl, "rows/s"), "info", "", f"session start {ours['session_s']:.1f} s; ours/limit incl. start {incl / lim['rows_per_s']:.2f}"],
            ["1 scoring", "ours, warm session (2nd scoring)", _fmt(ours.get("warm_rows_per_s"), "rows/s"), "info", "", f"ours-warm / limit {ours.get('warm_rows_per_s', 0) / lim['rows_per_s']:.2f}"],
        ]  # fmt: skip
    prep = results.get("prepare")
    fp = results.get("footprint")
    if prep and fp:
        rss = fp["compact_rss"]
        held = max(rss["nbytes_mb"], rss["rss_delta_load_mb"])
        numba = rss["rss_delta_after_first_predict_mb"] - rss["rss_delta_load_mb"]
        rows += [
            ["2 footprint", "default model held per worker: nbytes / RSS delta of load_compact", f"{rss['nbytes_mb']:.1f} MB / {rss['rss_delta_load_mb']:.1f} MB", "<= 50 MB", _status(held <= footprint.GOAL_MB), f"sklearn pickle of the same model {prep['sklearn_pickle_mb']:.0f} MB; first predict adds {numba:.0f} MB (numba runtime, once per process, not the model); whole worker process {rss['process_rss_mb']:.0f} MB"],
            ["2 footprint", "top-5 accuracy, default model", f"{prep['top5_compact']:.3f}", ">= 0.71", _status(prep["top5_compact"] >= footprint.GOAL_TOP5), f"sklearn {prep['top5_sklearn']:.3f} (same split)"],
        ]  # fmt: skip
    if sc:
        mem = sc["ours"]["_proc"]
        by = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(mem["peak_by_kind_mb"].items()))
        rows.append(["3 memory", "peak RSS, scoring N products (JVM + Python driver + workers)", f"{mem['peak_rss_mb']:.0f} MB", "<= 3072 MB", _status(mem["peak_rss_mb"] <= GOAL_PEAK_RSS_MB), f"{by}; seed: {sc['seed']['_proc']['peak_rss_mb']:.0f} MB"])  # fmt: skip
    ov = results.get("overhead")
    if ov:
        back, fixed = ov["backfill"], ov["fixed"]
        per = back["mean_client_s"]
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(back["step_mean_s"].items()))
        broken_alone = back["failed"] == [overhead.BROKEN_CLIENT]
        rows += [
            ["4 per client", f"wall per client, backfill of {len(back['runs']) - 1} tiny clients", _fmt(per, "s"), "<= 5 s", _status(per is not None and per <= overhead.GOAL_PER_CLIENT_S), f"steps: {steps}; first client {_fmt(back['first_client_s'], 's')}"],
            ["4 per client", "broken client fails alone", f"{back['succeeded']} ok, failed: {', '.join(back['failed']) or 'none'}", "only the broken one", _status(broken_alone), back["runs"].get(overhead.BROKEN_CLIENT, {}).get("failure", "")[:120]],
            ["4 per client", "fixed costs (one-off per process)", f"imports {fixed['imports_s']:.1f} s, Spark start {back['spark_start_s']:.1f} s", "info", "", f"python start {fixed['python_start_s']:.2f} s; new MLflow sqlite store {fixed['mlflow_new_sqlite_store_s']:.2f} s; log_model+register {fixed['mlflow_log_and_register_s']:.2f} s (first {fixed['mlflow_log_and_register_first_s']:.2f} s); Dagster empty run {fixed['dagster_empty_run_s']:.2f} s (first {fixed['dagster_empty_run_first_s']:.2f} s)"],
        ]  # fmt: skip
    sca = results.get("scale")
    if sca:
        imp, tick = sca["import_definitions_s"], sca["sensor"]
        rows += [
            ["5 scale", f"import bettercat_assets.definitions, {sca['clients']} clients", _fmt(imp, "s"), "<= 5 s", _status(imp <= scale.GOAL_IMPORT_S), f"whole fresh process {sca['process_wall_s']:.1f} s; of the import: dagster+mlflow+sklearn+pandas alone {sca.get('libraries_import_s', 0):.1f} s, load_clients of the {sca['clients']}-client file {sca.get('load_clients_s', 0):.1f} s (best of 2 runs: {', '.join(f'{v:.1f}' for v in sca.get('import_definitions_runs_s', []))} s)"],
            ["5 scale", f"sensor tick over {tick['events']} champion events", _fmt(tick["tick_s"], "s"), "<= 10 s", _status(tick["tick_s"] <= scale.GOAL_SENSOR_S), f"{tick['run_requests']} run requests for {tick['distinct_partitions']} clients"],
        ]  # fmt: skip
    rows += tenant_rows(results)
    if results.get("predict_cli"):
        rows += predict_cli.rows(results["predict_cli"])
    return rows + serving.summary_rows(results) + fleet_serving.summary_rows(results)


def _kinds(run: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(run["peak_by_kind_mb"].items()))


def tenant_rows(results: dict[str, Any]) -> list[list[str]]:
    """Sections 6 (tenants through dagster dev) and 7 (cold start of the CLI)."""
    rows: list[list[str]] = []
    for t in results.get("tenants", []):
        n = t["clients"]
        rows += [
            ["6 tenants", f"Materialize all, {n} tiny clients, dagster dev: wall per client", _fmt(t["per_client_s"], "s"), "<= 3 s", _status(t["per_client_s"] <= tenants.GOAL_S_PER_CLIENT), f"{t['wall_s']:.0f} s in all; before range runs: {tenants.BEFORE_S_PER_CLIENT:.1f} s per client ({tenants.BEFORE_S_PER_CLIENT / t['per_client_s']:.0f}x)"],
            ["6 tenants", f"{n} clients: runs launched / failed / scored more than once", f"{t['runs']} / {t['failed_runs']} / {t['scored_more_than_once']}", "failed 0, twice 0", _status(t["failed_runs"] == 0 and t["scored_more_than_once"] == 0 and t["not_scored"] == 0), f"clients not scored: {t['not_scored']}"],
            ["6 tenants", f"{n} clients: peak Python worker RSS above an idle Python with pandas+pyarrow+sklearn+mlflow", f"{t['above_baseline_mb']:+.0f} MB", "<= +50 MB", _status(t["above_baseline_mb"] <= 50), f"worker {t['worker_peak_rss_mb']:.0f} MB, baseline {t['baseline_rss_mb']:.0f} MB, {t['workers_seen']} workers seen"],
        ]  # fmt: skip
    so = results.get("scale_out")
    if so and len(so["runs"]) == 2:
        small, big = so["runs"]
        d_small, d_big = (
            small["peak_by_kind_mb"].get("python_driver", 0),
            big["peak_by_kind_mb"].get("python_driver", 0),
        )
        growth = d_big / d_small - 1 if d_small else float("nan")
        marginal = (big["products"] - small["products"]) / (
            big["materialize_s"] - small["materialize_s"]
        )
        pps_small = small["products"] / small["materialize_s"]
        pps_big = big["products"] / big["materialize_s"]
        rows += [
            ["9 scale out", f"driver Python peak RSS, category_predictions, {big['products']:,} products", f"{d_big:.0f} MB", "<= 1536 MB", _status(d_big <= scale_out.GOAL_DRIVER_MB), f"10M: {_kinds(big)}; 1M: {_kinds(small)}"],
            *[
                ["9 scale out", f"checks / score_and_write, category_predictions, {r['products']:,} products", f"{share:.1%}", "<= 15%", _status(share <= predict_cli.GOAL_CHECKS_SHARE), f"checks {r['timings'].get('checks', 0):.2f} s, score_and_write {r['timings'].get('score_and_write', 0):.2f} s"]
                for r in (small, big)
                for share in [r["timings"].get("checks", 0) / max(r["timings"].get("score_and_write", 0), 1e-9)]
            ],
            ["9 scale out", "driver peak at 10M vs 1M", f"{growth:+.0%}", "<= +20%", _status(growth <= scale_out.GOAL_DRIVER_GROWTH), f"1M driver {d_small:.0f} MB"],
            ["9 scale out", "marginal products/s from 1M to 10M vs products/s at 1M (whole materialize)", f"{marginal / pps_small - 1:+.0%}", ">= -15%", _status(marginal / pps_small - 1 >= -scale_out.GOAL_THROUGHPUT_DROP), f"1M {pps_small:,.0f}/s in {small['materialize_s']:.0f} s; 10M {pps_big:,.0f}/s in {big['materialize_s']:.0f} s ({pps_big / pps_small - 1:+.0%} whole-run); marginal {marginal:,.0f}/s"],
        ]  # fmt: skip
    c = results.get("cold")
    if c:
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in c["timings"].items())
        rows += [
            ["7 cold start", f"bettercat predict, {c['products']:,} products, fresh process", _fmt(c["wall_s"], "s"), "<= 12 s", _status(c["wall_s"] <= cold_start.GOAL_COLD_S), f"runs {', '.join(f'{w:.1f}' for w in c['walls_s'])} s; {parts}; Python worker start (measured alone) {c['worker_start_s']:.2f} s"],
            ["7 cold start", "peak Python worker RSS above an idle Python with pandas+pyarrow+sklearn+mlflow (100 trees, 20 classes)", f"{c['above_baseline_mb']:+.0f} MB", "<= +50 MB", _status(c["above_baseline_mb"] <= 50), f"worker {c['worker_peak_rss_mb']:.0f} MB, baseline {c['baseline_rss_mb']:.0f} MB"],
        ]  # fmt: skip
    return rows


def lever_rows(levers: list[dict[str, Any]]) -> list[list[str]]:
    by_name = {r["name"]: r for r in levers}
    seed = (levers[0]["rows_per_s"] if levers else 0.0) or 1.0
    out, previous = [], None
    for r in levers:
        ref = by_name.get(r["against"]) if r["against"] else previous
        vs = f"{r['rows_per_s'] / ref['rows_per_s']:.2f}x" if ref and ref["rows_per_s"] else ""
        vs_name = f" (vs {r['against'].split(' =')[0]})" if r["against"] else ""
        out.append(
            [
                r["name"],
                _fmt(r["rows_per_s"], "rows/s"),
                vs + vs_name,
                f"{r['rows_per_s'] / seed:.2f}x",
                f"{100_000 * r['cpu_s'] / max(r['rows'], 1):.1f}",
                f"{r['_proc']['other_cores']:.2f}",
            ]
        )
        previous = r
    return out


def footprint_rows(results: dict[str, Any]) -> list[list[str]]:
    prep, fp = results.get("prepare"), results.get("footprint") or {}
    if not prep:
        return []
    rows = [
        [
            "min_samples_leaf=5 (default), sklearn",
            f"{prep['sklearn_pickle_mb']:.0f}",
            f"{prep['top5_sklearn']:.3f}",
            "879 MB, 0.717",
        ],
        [
            "min_samples_leaf=5 (default), compact",
            f"{prep['compact_mb']:.1f}",
            f"{prep['top5_compact']:.3f}",
            "",
        ],
    ]
    for name in footprint.VARIANTS:
        v = fp.get(name)
        issue = footprint.ISSUE_TABLE[name]
        ref = f"{issue['sklearn_mb']} MB, {issue['top5']}"
        if v:
            rows.append(
                [f"{name}, sklearn", f"{v['sklearn_pickle_mb']:.0f}", f"{v['top5']:.3f}", ref]
            )
        else:
            rows.append([f"{name}, sklearn", "not run (quick mode)", "", ref])
    return rows


def beats(results: dict[str, Any]) -> str:
    """Which point of the issue's table the compact default beats (smaller and more accurate)."""
    prep, fp = results.get("prepare"), results.get("footprint") or {}
    if not prep:
        return ""
    size, acc = prep["compact_mb"], prep["top5_compact"]
    won = [
        name
        for name in footprint.VARIANTS
        if fp.get(name) and size <= fp[name]["sklearn_pickle_mb"] and acc >= fp[name]["top5"]
    ]
    if won:
        return (
            f"The compact default ({size:.1f} MB, top-5 {acc:.3f}) is smaller than and at least as "
            f"accurate as: {', '.join(won)} (and as accurate as sklearn's default at "
            f"{size / prep['sklearn_pickle_mb']:.1%} of its size)."
        )
    return f"The compact default: {size:.1f} MB, top-5 {acc:.3f}."


def render(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    parts = [
        f"Mode: **{results.get('mode', '?')}**, {results.get('sizes', {}).get('products', '?'):,} "
        f"products to score; started {results.get('started', '?')}, took "
        f"{results.get('elapsed_s', 0) / 60:.1f} min.",
        "",
        f"Machine: {m.get('nproc')} cores ({m.get('cpu')}), {m.get('ram_gb')} GB RAM; Python "
        f"{m.get('python')}, scikit-learn {m.get('sklearn')}, PySpark {m.get('pyspark')}, "
        f"pyarrow {m.get('pyarrow')}, numba {m.get('numba')}, {m.get('java')}. "
        f"Shared machine: other processes used {results.get('other_cores_note', '?')} cores "
        "during the throughput runs.",
        "",
        markdown_table(
            ["section", "measure", "value", "goal", "status", "note"], summary_rows(results)
        ),
    ]
    if results.get("levers"):
        parts += [
            "",
            "### Scoring levers (each step changes one thing; fresh Spark session; no session start)"
            + (
                f"; from the run of {results['levers_started']}"
                if results.get("levers_started")
                else ""
            ),
            "",
            markdown_table(
                ["step", "rows/s", "vs previous", "vs seed", "CPU s / 100k rows", "other cores"],
                lever_rows(results["levers"]),
            ),
        ]
    fp_rows = footprint_rows(results)
    if fp_rows:
        parts += [
            "",
            "### Model footprint (100 classes, 50k training rows, 100 trees; bench data)",
            "",
            markdown_table(["model", "size MB", "top-5", "issue's table"], fp_rows),
            "",
            beats(results),
        ]
    return "\n".join(parts) + "\n"


def _other_cores_note(results: dict[str, Any]) -> str:
    sc = results.get("scoring")
    if not sc:
        return "n/a"
    vals = [
        sc[k]["_proc"]["other_cores"] for k in ("limit_sklearn", "limit_compact", "ours", "seed")
    ]
    return f"{min(vals):.2f}-{max(vals):.2f}"


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="bettercat bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 5 minutes")
    parser.add_argument("--size", choices=sorted(SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--out", default="bench/out", help="where results.json/RESULTS.md go")
    parser.add_argument("--workdir", help="workspace directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument(
        "--sections",
        default="1,2,3,4,5,6,7,8,9,10,11",
        help="comma-separated: 1-11 (6 tenants through dagster dev, 7 CLI cold start, 8 serving, "
        "9 scale out to 10M products through the asset path, 10 fleet serving: 1,000 clients "
        "behind one server, 11 bettercat predict --timings at 1M against scikit-learn), "
        "or 'levers' for the lever ladder alone (3 comes with 1)",
    )
    parser.add_argument("--levers", choices=["none", "quick", "full"], help="lever ladder")
    parser.add_argument("--update-results", action="store_true", help="also write bench/RESULTS.md")
    parser.add_argument(
        "--levers-from", help="take the lever table from an earlier results.json (same machine)"
    )
    parser.add_argument("--render", metavar="RESULTS_JSON", help="re-render a results.json only")
    return parser


def _prepare(
    ws: Workspace, root: Path, cfg_json: dict, sizes: dict, sections: set[str], results: dict
) -> None:
    """Data and the default model for the sections that score (reused when sizes match)."""
    prepared = root / "prepare.json"
    key = {k: sizes[k] for k in ("products", "train_rows", "classes", "features")}
    key["noise"] = DEFAULT_NOISE
    needs_model = sections & {"1", "2", "3", "9", "11", "levers"}
    if needs_model and prepared.exists():
        saved = json.loads(prepared.read_text())
        if saved.get("key") == key:
            log(f"prepare: reusing the data and model in {root}")
            results["prepare"] = saved["result"]
    if needs_model and "prepare" not in results:
        log(f"prepare: {sizes['products']:,} products, train_model on {sizes['train_rows']:,}")
        results["prepare"] = child(
            ws,
            "prepare",
            {
                "client": cfg_json,
                "train_rows": sizes["train_rows"],
                "predict_rows": sizes["products"],
                "classes": sizes["classes"],
                "noise": DEFAULT_NOISE,
            },
        )
        prepared.write_text(json.dumps({"key": key, "result": results["prepare"]}))
        log(
            f"   top-5 {results['prepare']['top5_sklearn']:.3f}, train_model "
            f"{results['prepare']['train_model_s']:.0f} s"
        )


def _run_sections(
    ws: Workspace,
    cfg_json: dict,
    sizes: dict,
    sections: set[str],
    args: argparse.Namespace,
    results: dict,
) -> None:
    """Each section asked for, in the order that shares the most set-up."""
    if sections & {"1", "3"}:
        section_scoring(ws, cfg_json, sizes, results)
    if sections & {"1", "levers"} and sizes["levers"] != "none":
        section_levers(ws, cfg_json, sizes["levers"], results)
    if "2" in sections:
        section_footprint(ws, cfg_json, sizes, results)
    if args.levers_from and "levers" not in results:
        earlier = json.loads(Path(args.levers_from).read_text())
        results["levers"] = earlier.get("levers", [])
        results["levers_started"] = earlier.get("started")
    if "4" in sections:
        section_overhead(ws, sizes, results)
    if "5" in sections:
        section_scale(ws, sizes, results)
    _run_large_scoring_sections(ws, cfg_json, sizes, sections, results)
    if "6" in sections:
        section_tenants(ws, sizes, results)
    if "7" in sections:
        section_cold(ws, results)
    if "8" in sections:
        serving.section_serving(ws, cfg_json, results, child)
    if "10" in sections:
        fleet = sizes["fleet"]
        fleet_serving.section_fleet(
            ws, results, fleet["clients"], fleet["requests"], fleet["forests"]
        )


def _run_large_scoring_sections(
    ws: Workspace, cfg_json: dict, sizes: dict, sections: set[str], results: dict
) -> None:
    """Sections 9 (asset path at 1M and 10M) and 11 (the CLI at 1M): each rewrites the
    bench client's scoring file."""
    if "9" in sections and sizes.get("scale_out", True):
        section_scale_out(ws, cfg_json, results)
    if "11" in sections:
        section_predict_cli(ws, cfg_json, sizes, results)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        text = render(json.loads(Path(args.render).read_text()))
        if args.update_results:
            write_results_doc(text, Path(__file__).parent / "RESULTS.md")
        print(text)
        return 0

    mode = args.size or ("quick" if args.quick else "full")
    sizes = dict(SIZES[mode])
    if args.levers:
        sizes["levers"] = args.levers
    sections = set(args.sections.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bettercat-bench-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": mode,
        "sizes": sizes,
        "noise": DEFAULT_NOISE,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "workspace": str(root),
    }
    cfg = bench_client(CLIENT_ID, feature_names(sizes["features"]))
    cfg_json = cfg.model_dump(mode="json")
    try:
        _prepare(ws, root, cfg_json, sizes, sections, results)
        _run_sections(ws, cfg_json, sizes, sections, args, results)
    finally:
        results["elapsed_s"] = time.perf_counter() - started
        results["other_cores_note"] = _other_cores_note(results)
        (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    text = render(results)
    (out_dir / "RESULTS.md").write_text(text)
    if args.update_results:
        write_results_doc(text, Path(__file__).parent / "RESULTS.md")
    print(text)
    return 0


RESULTS_HEADER = """# Bench results

`make bench` (full) or `make bench-quick` runs `python -m bench.run`; this file is written by
`python -m bench.run --update-results` from a real run. Ratios are measured in the same run;
absolute rows/s depend on the machine and on how busy it was (see "other cores").

"""


def write_results_doc(table: str, path: Path) -> None:
    notes_marker = "<!-- notes: kept across updates -->"
    notes = ""
    if path.exists() and notes_marker in path.read_text():
        notes = path.read_text().split(notes_marker, 1)[1]
    path.write_text(RESULTS_HEADER + table + "\n" + notes_marker + notes)


if __name__ == "__main__":
    raise SystemExit(main())
