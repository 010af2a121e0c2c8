"""Section 10, fleet serving: 1,000 clients behind one `bettercat serve` (issue 27).

Prepare (bench.fleet_prepare): 1,000 clients in a clients.yaml, each with a registered
`@champion` of its own (its own logged model and artifacts, loaded and held on its own by the
server): `DISTINCT_FORESTS` forests of different sizes are fitted and logged once, and each
client's version is a copy of one of them. A few popular clients get a second, unpromoted
version for the swap.

Measure, with the server started as users start it (`bettercat serve`, default cache budget)
and load from a separate process (bench.fleet_load) over real sockets:

* Zipf(1.1) popularity over the clients, 1 product per request, `CONNECTIONS` kept-alive
  connections: p50/p99 of cache hits and misses (the server's `X-Bettercat-Cache` header),
  requests/s, the server's peak RSS (VmHWM) and its cache's evictions;
* the swap: Zipf traffic plus every other request to the most popular client; `bettercat
  promote` moves that client's champion; time from the alias moving (watched in the registry
  at 20 Hz) to the first answer from the new version, and failed requests meanwhile.

Alone: `python -m bench.fleet_serving [--clients 1000] [--requests 12000] [--update-results]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .fleet_prepare import (
    DISTINCT_FORESTS,
    FEATURES,
    ZIPF_EXPONENT,
    client_ids,
    log,
    register_fleet,
    zipf_weights,
)
from .workspace import REPO, Workspace

GOAL_HIT_P99_MS, GOAL_MISS_P99_MS, GOAL_RSS_MB, GOAL_SWAP_S = 20.0, 250.0, 1536.0, 10.0
CONNECTIONS = 2
BLOCK_START, BLOCK_END = "<!-- fleet-serving:start -->", "<!-- fleet-serving:end -->"


# --------------------------------------------------------------------------- measuring


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _get(port: int, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.read().decode()


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))  # fmt: skip


def start_server(ws: Workspace, workdir: Path) -> tuple[subprocess.Popen, int, float]:
    """`bettercat serve` (every client, default budget) as users start it; (proc, port, ready s)."""
    port = _free_port()
    env = {**ws.env(), "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}  # fmt: skip
    log_file = (workdir / "fleet-server.log").open("wb")
    argv = [str(Path(sys.executable).parent / "bettercat"), "serve", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    started = time.perf_counter()
    while time.perf_counter() - started < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(workdir / 'fleet-server.log').read_text()[-2000:]}")  # fmt: skip
        try:
            _get(port, "/health")
            return proc, port, time.perf_counter() - started
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("fleet server not ready after 300 s")


def _run_load(ws: Workspace, port: int, plan: Path, out: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "bench.fleet_load", "--port", str(port), "--plan", str(plan), "--out", str(out), "--connections", str(CONNECTIONS), *extra]  # fmt: skip
    return subprocess.Popen(argv, cwd=REPO, env=ws.env())


def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"n": 0}
    ms = np.asarray(latencies) * 1000
    return {"n": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}  # fmt: skip


def summarize_load(records: list[list[Any]], wall_s: float) -> dict[str, Any]:
    """Hits, misses, failures and throughput from the load generator's records."""
    ok = [r for r in records if r[1] == 200 and r[5] == 5]
    return {
        "requests": len(records),
        "failed": len(records) - len(ok),
        "failures": sorted({f"{r[1]} {r[3]}" for r in records if r not in ok})[:5],
        "requests_per_s": round(len(records) / wall_s, 1),
        "hit": _percentiles([r[2] for r in ok if r[3] == "hit"]),
        "miss": _percentiles([r[2] for r in ok if r[3] == "miss"]),
        # in the server (Server-Timing): the request's own CPU, and its time inside the app
        "hit_cpu": _percentiles([r[7] / 1000 for r in ok if r[3] == "hit"]),
        "miss_cpu": _percentiles([r[7] / 1000 for r in ok if r[3] == "miss"]),
        "hit_app": _percentiles([r[8] / 1000 for r in ok if r[3] == "hit"]),
        "distinct_clients": len({r[0] for r in records}),
    }


def _watch_alias(ws: Workspace, model_name: str, version: int, timeout: float = 180) -> float:
    """Unix time at which `model_name@champion` is seen to be `version` (polled at 20 Hz)."""
    from bettercat_assets.core.tracking import runs as tracking

    client = tracking.mlflow_client(ws.settings)
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if int(client.get_model_version_by_alias(model_name, "champion").version) == version:
            return time.time()
        time.sleep(0.05)
    raise TimeoutError(f"{model_name}@champion never became v{version}")


def measure_swap(ws: Workspace, port: int, plan: Path, workdir: Path, client: str) -> dict[str, Any]:  # fmt: skip
    """Promote `client` (v1 <-> v2) with `bettercat promote` under load; see module docstring."""
    from bettercat_assets.core.tracking import runs as tracking

    current = tracking.champion_version(tracking.mlflow_client(ws.settings), f"{client}_model")
    target = 1 if int(current.version) == 2 else 2
    stop, out = workdir / "swap.stop", workdir / "swap.json"
    stop.unlink(missing_ok=True)
    load = _run_load(ws, port, plan, out, "--until-file", str(stop), "--pinned-client", client, "--seed", "99")  # fmt: skip
    time.sleep(5)  # traffic before the promote
    load_t0 = time.time()
    cli = [str(Path(sys.executable).parent / "bettercat"), "promote", "--client-id", client, "--version", str(target)]  # fmt: skip
    promote = subprocess.Popen(cli, cwd=REPO, env=ws.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    alias_at_unix = _watch_alias(ws, f"{client}_model", target)
    promote.wait(120)
    time.sleep(12)  # traffic after it
    stop.touch()
    load.wait(120)
    data = json.loads(out.read_text())
    started_unix = data["started_unix"]
    pinned = sorted((r[6] + started_unix, r[4]) for r in data["records"] if r[0] == client and r[1] == 200)  # fmt: skip
    first_new = next((t for t, v in pinned if v == target), None)
    summary = summarize_load(data["records"], data["wall_s"])
    return {
        "client": client,
        "promote_exit": promote.returncode,
        "alias_to_first_new_answer_s": round(first_new - alias_at_unix, 2) if first_new else None,
        "promote_started_to_alias_s": round(alias_at_unix - load_t0, 2),
        "old_answers_after_first_new": sum(
            1 for t, v in pinned if first_new and t > first_new and v != target
        ),
        "versions": f"v{current.version} -> v{target}",
        "requests": summary["requests"],
        "failed": summary["failed"],
        "failures": summary["failures"],
    }


def _server_state(port: int, pid: int) -> dict[str, Any]:
    text = _get(port, "/metrics")
    return {
        "rss_mb": round(_status_kb(pid, "VmRSS:") / 1024, 0),
        "peak_rss_mb": round(_status_kb(pid, "VmHWM:") / 1024, 0),
        "loaded_models": int(_metric(text, "bettercat_serving_loaded_models")),
        "loaded_mb": round(_metric(text, "bettercat_serving_loaded_bytes") / 2**20, 0),
        "budget_mb": round(_metric(text, "bettercat_serving_cache_budget_bytes") / 2**20, 0),
        "evictions": int(_metric(text, "bettercat_serving_cache_evictions_total")),
    }


def section_fleet(
    ws: Workspace,
    results: dict[str, Any],
    clients: int,
    requests: int,
    distinct: int = DISTINCT_FORESTS,
) -> None:
    """Prepare (or reuse) the fleet, then measure load and swap against one server."""
    prepared = ws.root / "prepare-fleet.json"
    if prepared.exists() and json.loads(prepared.read_text())["clients"] == clients:
        prep = json.loads(prepared.read_text())
        log(f"reusing the {clients} registered clients in {ws.root}")
    else:
        log(f"registering {clients} clients' champions")
        prep = register_fleet(ws, clients, distinct)
        prepared.write_text(json.dumps(prep))
    workdir = Path(tempfile.mkdtemp(prefix="fleet-", dir=ws.root))
    ids = client_ids(clients)
    plan = workdir / "plan.json"
    plan.write_text(json.dumps({"clients": ids, "weights": zipf_weights(clients).tolist(), "features": {c: FEATURES for c in ids}}))  # fmt: skip
    # a cold server: no model downloaded yet (the server keeps downloads in BETTERCAT_HOME)
    shutil.rmtree(ws.home / "serving" / "fleet", ignore_errors=True)
    proc, port, ready_s = start_server(ws, workdir)
    try:
        idle = _server_state(port, proc.pid)
        log(f"server ready in {ready_s:.1f} s, RSS {idle['rss_mb']:.0f} MB; {requests} requests")
        out = workdir / "load.json"
        cpu_before, load_before = _cpu_s(proc.pid), os.getloadavg()[0]
        if _run_load(ws, port, plan, out, "--requests", str(requests)).wait() != 0:
            raise RuntimeError("load generator failed")
        data = json.loads(out.read_text())
        load = summarize_load(data["records"], data["wall_s"])
        load["server_cpu_ms_per_request"] = round((_cpu_s(proc.pid) - cpu_before) / load["requests"] * 1000, 2)  # fmt: skip
        load["loadavg"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        after_load = _server_state(port, proc.pid)
        log(f"load: {load}; server {after_load}")
        swap = measure_swap(ws, port, plan, workdir, prep["popular"][0])
        log(f"swap: {swap}")
        final = _server_state(port, proc.pid)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
    results["fleet_serving"] = {"prepare": prep, "ready_s": round(ready_s, 1), "idle": idle, "load": load, "after_load": after_load, "swap": swap, "final": final, "connections": CONNECTIONS, "zipf": ZIPF_EXPONENT}  # fmt: skip


def _status(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def _pair(stats: dict[str, float] | None) -> str:
    if not stats or not stats.get("n"):
        return "-"
    return f"{stats['p50_ms']:.1f} / {stats['p99_ms']:.1f}"


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """[section, measure, value, goal, status, note] rows."""
    fs = results.get("fleet_serving")
    if not fs:
        return []
    prep, load, swap, final = fs["prepare"], fs["load"], fs["swap"], fs["final"]
    hit, miss = load["hit"], load["miss"]
    n = prep["clients"]
    where = f"{load['requests']:,} requests of 1 product, Zipf({fs['zipf']}) over {n:,} clients ({load['distinct_clients']} asked), {fs['connections']} kept-alive connections from another process"  # fmt: skip
    return [
        ["10 fleet", "cache hits: p50 / p99", f"{hit['p50_ms']:.1f} / {hit['p99_ms']:.1f} ms", f"p99 <= {GOAL_HIT_P99_MS:.0f} ms", _status(hit["p99_ms"] <= GOAL_HIT_P99_MS), f"{hit['n']:,} hits; {where}; in the server (Server-Timing): CPU p50/p99 {_pair(load.get('hit_cpu'))} ms, time in the app {_pair(load.get('hit_app'))} ms"],
        ["10 fleet", "cache misses (download or disk + load + answer): p50 / p99", f"{miss['p50_ms']:.1f} / {miss['p99_ms']:.1f} ms", f"p99 <= {GOAL_MISS_P99_MS:.0f} ms", _status(miss["p99_ms"] <= GOAL_MISS_P99_MS), f"{miss['n']:,} misses (max {miss.get('max_ms', 0):.0f} ms), CPU p50/p99 {_pair(load.get('miss_cpu'))} ms in the server; {final['evictions']:,} evictions by the end"],
        ["10 fleet", "throughput", f"{load['requests_per_s']:.0f} requests/s", "info", "", f"{load['failed']} failed; server CPU {load.get('server_cpu_ms_per_request', 0):.1f} ms/request (hits and misses); load average {' -> '.join(str(v) for v in load.get('loadavg', []))} on {os.cpu_count()} cores; server ready {fs['ready_s']:.1f} s after start"],
        ["10 fleet", "server peak RSS (VmHWM), default budget", f"{final['peak_rss_mb']:.0f} MB", f"<= {GOAL_RSS_MB:.0f} MB", _status(final["peak_rss_mb"] <= GOAL_RSS_MB), f"budget {final['budget_mb']:.0f} MB; at the end {final['loaded_models']} models loaded, {final['loaded_mb']:.0f} MB; idle {fs['idle']['rss_mb']:.0f} MB; all {n:,} models {prep['all_models_mb']:.0f} MB (each {prep['model_mb']['min']}-{prep['model_mb']['max']} MB, mean {prep['model_mb']['mean']})"],
        ["10 fleet", "`bettercat promote` -> first answer from the new version", f"{swap['alias_to_first_new_answer_s']} s", f"<= {GOAL_SWAP_S:.0f} s, 0 failed", _status(swap["alias_to_first_new_answer_s"] is not None and swap["alias_to_first_new_answer_s"] <= GOAL_SWAP_S and swap["failed"] == 0), f"from the alias moving in the registry (the promote command itself took {swap['promote_started_to_alias_s']} s to get there); {swap['requests']:,} requests during the swap, {swap['failed']} failed, {swap['old_answers_after_first_new']} old-version answers after the first new one"],
    ]  # fmt: skip


def render_block(results: dict[str, Any]) -> str:
    from .runner import markdown_table

    fs = results["fleet_serving"]
    prep = fs["prepare"]
    header = (
        f"### Fleet serving (section 10; {prep['clients']:,} clients behind one `bettercat serve`, "
        f"{prep['distinct_forests']} distinct forests registered as each client's own champion "
        f"through the store functions; run of {results.get('started', '?')})"
    )
    table = markdown_table(
        ["section", "measure", "value", "goal", "status", "note"], summary_rows(results)
    )
    return f"{BLOCK_START}\n{header}\n\n{table}\n{BLOCK_END}"


def update_results_doc(results: dict[str, Any], path: Path) -> None:
    """Put the block into RESULTS.md, replacing an earlier one; nothing else changes."""
    text = path.read_text() if path.exists() else ""
    block = render_block(results)
    if BLOCK_START in text and BLOCK_END in text:
        before, rest = text.split(BLOCK_START, 1)
        text = before + block + rest.split(BLOCK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    from datetime import datetime, timezone

    parser = argparse.ArgumentParser(description="bench section 10: fleet serving")
    parser.add_argument("--workdir", help="workspace (kept; default: a temporary one, removed)")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=12000)
    parser.add_argument("--forests", type=int, default=DISTINCT_FORESTS)
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--update-results", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args(argv)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bettercat-bench-fleet-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        section_fleet(Workspace(root), results, args.clients, args.requests, args.forests)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet_serving.json").write_text(json.dumps(results, indent=1, default=str))
    if args.update_results:
        update_results_doc(results, Path(__file__).parent / "RESULTS.md")
    print(render_block(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
