"""Load generator for the `fleet serving` bench section, run as its own process.

`python -m bench.fleet_load --port P --plan plan.json --out out.json`

The plan (written by bench.fleet_serving) names the clients, their features and the Zipf
weights. `--requests N` sends N requests (1 product each) from `--connections` threads, each on
its own kept-alive HTTP connection, clients drawn by Zipf popularity; every request's client,
status, latency, cache outcome (`X-Bettercat-Cache`) and model version are recorded.
`--until-file F` instead keeps sending until F exists (the swap phase), also recording when.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _body(rng: np.random.Generator, features: list[str], n: int) -> bytes:
    values = np.round(rng.normal(size=len(features)) * 2, 3).tolist()
    split = {"columns": ["product_id", *features], "data": [[f"p{n}", *values]]}
    return json.dumps({"dataframe_split": split}).encode()


class Worker(threading.Thread):
    """One connection sending requests drawn from the plan."""

    def __init__(self, port: int, plan: dict[str, Any], seed: int, count: int | None, stop: Path | None, pinned: str | None, t0: float) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.port, self.plan, self.count, self.stop, self.pinned, self.t0 = port, plan, count, stop, pinned, t0  # fmt: skip
        self.rng = np.random.default_rng(seed)
        self.records: list[list[Any]] = []

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def _one(self, conn: http.client.HTTPConnection, client: str, n: int) -> list[Any]:
        body = _body(self.rng, self.plan["features"][client], n)
        started = time.perf_counter()
        try:
            conn.request("POST", f"/clients/{client}/invocations", body=body, headers={"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            payload = response.read()
            latency = time.perf_counter() - started
            version = response.getheader("X-Bettercat-Model-Version")
            rows = len(json.loads(payload)["predictions"]) if response.status == 200 else 0
            timing = dict(part.strip().split(";dur=") for part in (response.getheader("Server-Timing") or "").split(",") if ";dur=" in part)  # fmt: skip
            return [client, response.status, latency, response.getheader("X-Bettercat-Cache"), int(version) if version else None, rows, started - self.t0, float(timing.get("cpu", "nan")), float(timing.get("app", "nan"))]  # fmt: skip
        except (OSError, http.client.HTTPException, ValueError) as exc:
            conn.close()
            return [client, 0, time.perf_counter() - started, repr(exc)[:200], None, 0, started - self.t0, float("nan"), float("nan")]  # fmt: skip

    def run(self) -> None:
        clients, weights = self.plan["clients"], np.asarray(self.plan["weights"])
        conn, n = self._connect(), 0
        while (self.count is None or n < self.count) and not (self.stop and self.stop.exists()):
            pick = self.pinned if self.pinned and n % 2 == 0 else clients[self.rng.choice(len(clients), p=weights)]  # fmt: skip
            self.records.append(self._one(conn, pick, n))
            n += 1
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--until-file", default=None)
    parser.add_argument("--pinned-client", default=None, help="every other request goes here")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    plan = json.loads(Path(args.plan).read_text())
    per = None if args.requests is None else -(-args.requests // args.connections)
    stop = Path(args.until_file) if args.until_file else None
    t0 = time.perf_counter()
    workers = [Worker(args.port, plan, args.seed + i, per, stop, args.pinned_client, t0) for i in range(args.connections)]  # fmt: skip
    started_unix = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - t0
    records = [r for w in workers for r in w.records]
    Path(args.out).write_text(json.dumps({"wall_s": wall, "started_unix": started_unix, "records": records}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
