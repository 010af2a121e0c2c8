"""One server for every client (`bettercat serve` without --client-id), through real HTTP.

One fleet server per module (the `fleet` fixture) on three trained clients, one client with no
registered model and one whose registered model has no champion; its cache budget holds any
two of the three models but not all three, so eviction happens as the tests go.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from bettercat_assets_tests import process_support
from bettercat_assets_tests.reliability_support import write_clients_file

pytestmark = pytest.mark.integration

DAY = date(2026, 6, 2)
TRAINED = {
    "fleet_a": ["price", "weight_g", "rating"],
    "fleet_b": ["price", "n_reviews"],
    "fleet_c": ["weight_g", "rating", "n_reviews", "price"],
}
NO_MODEL, NO_CHAMPION = "fleet_nomodel", "fleet_nochamp"
MAX_ROWS, MAX_BODY_MB, POLL_S = 100, 0.25, 0.5
COLUMNS = ["product_id", "pred_label", "pred_score", "rank", "model_version"]


@dataclass
class Fleet:
    url: str
    server: process_support.ManagedProcess
    products: dict[str, pd.DataFrame]
    versions: dict[str, int]
    budget_bytes: int
    registry: object
    layout: object
    env: dict[str, str]


def post(url: str, body: bytes | dict, timeout: float = 60) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc), dict(exc.headers)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def split_body(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


def metric(fleet: Fleet, name: str) -> float:
    with urllib.request.urlopen(f"{fleet.url}/metrics", timeout=30) as response:
        text = response.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not in /metrics"
    return values[0]


def _train_clients(root: Path, tracking_settings):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.tracking import runs as tracking
    from bettercat_assets.core.training.train import train_model

    entries = [
        f"{{client_id: {cid}, features: [{', '.join(f)}], "
        f"sample_data: {{products: 400, categories: {7 + i}}}}}"
        for i, (cid, f) in enumerate(TRAINED.items())
    ]
    entries += [f"{{client_id: {cid}, features: [price]}}" for cid in (NO_MODEL, NO_CHAMPION)]
    registry = load_clients(write_clients_file(root / "clients.yaml", entries))
    layout = DataLayout(root / "data")
    versions = {}
    for i, cid in enumerate(TRAINED):
        generate_client_data(registry.get(cid), layout, seed=20 + i)
        for _ in range(2 if cid == "fleet_a" else 1):  # fleet_a gets v1 and v2 (to promote)
            result = train_model(registry.get(cid), DAY, layout=layout, settings=tracking_settings)
            assert result.champion_version == result.version, result.gate.reason
        versions[cid] = result.version
    tracking.mlflow_client(tracking_settings).create_registered_model(f"{NO_CHAMPION}_model")
    return registry, layout, versions


def _budget_for_two_of_three(tracking_settings, versions) -> int:
    """Bytes that hold any two of the trained models (as the server counts them), not three."""
    from bettercat_assets.core.model import store
    from bettercat_assets.core.serving.model_loader import PER_MODEL_OVERHEAD_BYTES

    sizes = [
        store.load_compact(tracking_settings, f"{cid}_model", v).nbytes + PER_MODEL_OVERHEAD_BYTES
        for cid, v in versions.items()
    ]
    return sum(sizes) - min(sizes) // 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, tracking_settings):
    root = tmp_path_factory.mktemp("fleet")
    registry, layout, versions = _train_clients(root, tracking_settings)
    budget = _budget_for_two_of_three(tracking_settings, versions)
    products = {
        cid: pd.read_csv(layout.predict_file(cid), dtype={"product_id": str}) for cid in TRAINED
    }
    port = process_support.free_port()
    env = {
        **process_support.os.environ,
        "MLFLOW_TRACKING_URI": tracking_settings.tracking_uri,
        "BETTERCAT_CLIENTS_FILE": str(registry.path),
        "BETTERCAT_HOME": str(root / "home"),
    }
    server = process_support.start_process(
        "bettercat serve (fleet)",
        [
            Path(sys.executable).parent / "bettercat",
            *("serve", "--port", port, "--cache-mb", f"{budget / 2**20:.6f}"),
            *("--max-rows", MAX_ROWS, "--max-body-mb", MAX_BODY_MB, "--poll-seconds", POLL_S),
        ],
        env=env,
        log=root / "fleet.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process_support.wait_for_http(f"{url}/health", 120, processes=[server])
        yield Fleet(url, server, products, versions, budget, registry, layout, env)
    finally:
        server.stop()


def expected_rows(model_name: str, version: int, frame: pd.DataFrame) -> pd.DataFrame:
    """What the registered version itself answers (mlflow.pyfunc in this process)."""
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{model_name}/{version}").predict(frame)


def assert_same_rows(answer: list[dict], expected: pd.DataFrame) -> None:
    served = pd.DataFrame(answer)
    assert list(served.columns) == COLUMNS
    assert served["product_id"].tolist() == expected["product_id"].tolist()
    assert served["pred_label"].tolist() == expected["pred_label"].tolist()
    assert served["rank"].tolist() == expected["rank"].tolist()
    assert np.abs(served["pred_score"] - expected["pred_score"]).max() <= 1e-6
    assert served["model_version"].tolist() == expected["model_version"].tolist()


def test_served_answers_equal_the_batch_for_every_client(fleet, tracking_settings, spark):
    from bettercat_assets.core.scoring.spark_pass import predict_categories

    for cid in TRAINED:
        result = predict_categories(
            fleet.registry.get(cid),
            DAY,
            spark=spark,
            layout=fleet.layout,
            settings=tracking_settings,
        )
        batch = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()
        products = fleet.products[cid]
        served = []
        for start in range(0, len(products), MAX_ROWS):
            part = products.iloc[start : start + MAX_ROWS]
            status, body, headers = post(f"{fleet.url}/clients/{cid}/invocations", split_body(part))
            assert status == 200, body
            assert headers["x-bettercat-model-version"] == str(fleet.versions[cid])
            served += body["predictions"]
        merged = batch.merge(pd.DataFrame(served), on=["product_id", "rank"], suffixes=("_b", "_s"))
        assert len(merged) == len(batch) == len(served) == 5 * len(products)
        assert (merged["pred_label_b"] == merged["pred_label_s"]).all(), cid
        assert np.abs(merged["pred_score_b"] - merged["pred_score_s"]).max() <= 1e-6
        assert set(merged["model_version_s"]) == {result.model_version} == {fleet.versions[cid]}
    status = get_json(f"{fleet.url}/clients/fleet_b")
    assert status["serving_version"] == fleet.versions["fleet_b"] and status["serving_since"]


def test_clear_errors_name_the_client_the_reason_or_the_column(fleet):
    one = fleet.products["fleet_a"].head(2)
    url = f"{fleet.url}/clients"
    cases = [
        ("nobody", split_body(one), 404, ["unknown client 'nobody'"]),
        (NO_MODEL, split_body(one), 404, ["no servable champion", "no registered model"]),
        (NO_CHAMPION, split_body(one), 404, ["no servable champion", "no @champion"]),
        ("fleet_a", split_body(one.drop(columns="weight_g")), 400, ["fleet_a", "weight_g"]),
        ("fleet_a", split_body(one.assign(rating=["good", "bad"])), 400, ["rating"]),
        ("fleet_a", {"dataframe_records": "x"}, 400, ["must be a list"]),
        ("fleet_a", b'{"dataframe_split": ', 400, ["not valid JSON"]),
        ("..%2Fetc", split_body(one), 400, ["'../etc' is not valid"]),
    ]
    for cid, body, status, words in cases:
        got, answer, _ = post(f"{url}/{cid}/invocations", body)
        assert got == status and all(w in answer["message"] for w in words), (cid, answer)
        assert "\n" not in answer["message"] and len(answer["message"]) <= 300
    many = pd.concat([fleet.products["fleet_a"]] * 2).head(MAX_ROWS + 1)
    got, answer, _ = post(f"{url}/fleet_a/invocations", split_body(many))
    assert got == 413 and "--max-rows" in answer["message"]
    got, answer, _ = post(f"{url}/fleet_a/invocations", b" " * int(MAX_BODY_MB * 2**20 + 1))
    assert got == 413 and "--max-body-mb" in answer["message"]


def test_eviction_keeps_the_cache_within_its_budget(fleet):
    evictions = metric(fleet, "bettercat_serving_cache_evictions_total")
    for cid in [*TRAINED, *TRAINED]:  # three models, room for two: someone is evicted
        frame = fleet.products[cid].head(3)
        status, body, _ = post(f"{fleet.url}/clients/{cid}/invocations", split_body(frame))
        assert status == 200, body
        expected = expected_rows(f"{cid}_model", fleet.versions[cid], frame)
        assert_same_rows(body["predictions"], expected)
        assert metric(fleet, "bettercat_serving_loaded_bytes") <= fleet.budget_bytes
    assert metric(fleet, "bettercat_serving_cache_evictions_total") > evictions
    assert metric(fleet, "bettercat_serving_loaded_models") <= 2


class Hammer(threading.Thread):
    """POSTs one client's products in a loop, recording (version, answer) or the failure."""

    def __init__(self, fleet: Fleet, cid: str) -> None:
        super().__init__(daemon=True)
        self.url, self.frame = f"{fleet.url}/clients/{cid}/invocations", fleet.products[cid].head(4)
        self.answers: list[tuple[int, list[dict]]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body, _ = post(self.url, split_body(self.frame))
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            if status != 200:
                self.failures.append(f"{status} {body}")
            else:
                self.answers.append((body["predictions"][0]["model_version"], body["predictions"]))


def test_a_promote_is_followed_without_restart_and_no_request_fails(fleet):
    """`bettercat promote` (a real CLI process) moves fleet_a from v2 to v1 while every client
    is asked continuously: the server answers with v1 soon after, without a restart, and no
    request fails; each answer is right for the version it names."""
    old, new = fleet.versions["fleet_a"], fleet.versions["fleet_a"] - 1
    hammers = {cid: Hammer(fleet, cid) for cid in TRAINED}
    for hammer in hammers.values():
        hammer.start()
    process_support.wait_until(lambda: all(h.answers for h in hammers.values()), 60, "answers")
    promote_started = time.monotonic()
    promoted = subprocess.run(
        [Path(sys.executable).parent / "bettercat", "promote", "--client-id", "fleet_a"]
        + ["--version", str(new)],
        env=fleet.env,
        capture_output=True,
        text=True,
    )
    assert promoted.returncode == 0, promoted.stderr
    promote_s = time.monotonic() - promote_started
    process_support.wait_until(
        lambda: hammers["fleet_a"].answers[-1][0] == new, 60, "v1 answers", interval=0.05
    )
    followed_s = time.monotonic() - promote_started
    time.sleep(1)
    for hammer in hammers.values():
        hammer.stop.set()
        hammer.join(60)
    print(
        f"new champion answered {followed_s:.1f} s after `bettercat promote` started ({promote_s:.1f} s)"
    )
    assert not [f for h in hammers.values() for f in h.failures]
    seen = [version for version, _ in hammers["fleet_a"].answers]
    switch = seen.index(new)
    assert set(seen[:switch]) == {old} and set(seen[switch:]) == {new}  # one switch, no flapping
    frame = hammers["fleet_a"].frame
    for version in (old, new):
        answer = next(rows for v, rows in hammers["fleet_a"].answers if v == version)
        assert_same_rows(answer, expected_rows("fleet_a_model", version, frame))
    for cid in ("fleet_b", "fleet_c"):
        assert {v for v, _ in hammers[cid].answers} == {fleet.versions[cid]}
    assert get_json(f"{fleet.url}/clients/fleet_a")["serving_version"] == new
    fleet.versions["fleet_a"] = new


def _hostile_requests(fleet: Fleet) -> list[tuple[str, bytes]]:
    one = fleet.products["fleet_b"].head(1)
    big_rows = pd.concat([fleet.products["fleet_b"]] * 2).head(MAX_ROWS + 1)
    kinds = [
        ("fleet_b", b"{{{"),
        ("fleet_b", b"\x00\xff" * 50),
        ("fleet_b", json.dumps(split_body(big_rows)).encode()),
        ("fleet_b", b'{"dataframe_records": [' + b'{"price": 1},' * 30_000 + b"{}]}"),
        ("fleet_b", json.dumps(split_body(one.drop(columns="price"))).encode()),
        ("fleet_b", json.dumps({"dataframe_split": {"columns": 1, "data": 2}}).encode()),
        ("ghost", json.dumps(split_body(one)).encode()),
        ("..%2F..%2Fetc%2Fpasswd", b"{}"),
        (NO_MODEL, json.dumps(split_body(one)).encode()),
    ]
    return kinds * 5


def test_a_burst_of_hostile_requests_leaves_good_ones_and_the_server_intact(fleet):
    url = f"{fleet.url}/clients"
    good = [(cid, fleet.products[cid].sample(2, random_state=i)) for i, cid in enumerate(TRAINED)]
    good = good * 15
    expected = [expected_rows(f"{c}_model", fleet.versions[c], f) for c, f in good]
    work = [("good", i) for i in range(len(good))] + [("bad", r) for r in _hostile_requests(fleet)]
    random.Random(7).shuffle(work)
    results: dict[int, tuple] = {}
    bad_statuses: list[int] = []
    lock = threading.Lock()

    def worker(items):
        for kind, item in items:
            if kind == "good":
                cid, frame = good[item]
                got = post(f"{url}/{cid}/invocations", split_body(frame))
                with lock:
                    results[item] = got
            else:
                status, body, _ = post(f"{url}/{item[0]}/invocations", item[1])
                with lock:
                    bad_statuses.append(status)
                assert "\n" not in body["message"]

    threads = [threading.Thread(target=worker, args=(work[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == len(good) and len(bad_statuses) == len(_hostile_requests(fleet))
    for i, (status, body, _) in results.items():
        assert status == 200, body
        assert_same_rows(body["predictions"], expected[i])
    assert all(400 <= s < 500 for s in bad_statuses), sorted(set(bad_statuses))
    assert sorted(set(bad_statuses)) == [400, 404, 413]
    fleet.server.assert_alive()
    assert get_json(f"{fleet.url}/health")["status"] == "ok"
    assert metric(fleet, "bettercat_serving_loaded_bytes") <= fleet.budget_bytes


def test_fleet_options_that_apply_to_one_client_are_refused():
    from click.testing import CliRunner

    from bettercat_assets.cli import main
    from bettercat_assets_tests.reliability_support import assert_one_error_line

    result = CliRunner().invoke(main, ["serve", "--workers", "2"])
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr)
    assert "--workers and --mlflow-cli apply to one client" in line
    result = CliRunner().invoke(main, ["serve", "--clients-file", "/nonexistent/clients.yaml"])
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr)
    assert "/nonexistent/clients.yaml" in line


def test_the_one_query_sweep_agrees_with_the_registry_pages(fleet, tracking_settings):
    from bettercat_assets.core.serving.champion_watch import _sql_query, sweep, sweep_pages
    from bettercat_assets.core.tracking import runs as tracking

    client = tracking.mlflow_client(tracking_settings)
    assert _sql_query(client) is not None  # a SQL registry: `sweep` asks one query
    found = sweep(client)
    assert found == sweep_pages(client)
    assert found[f"{NO_CHAMPION}_model"] is None
    assert found["fleet_b_model"] == fleet.versions["fleet_b"]
