"""The production profile without Docker: PostgreSQL, `mlflow server`, a gRPC code server,
`dagster-webserver` and `dagster-daemon`, configured by the very files Docker Compose uses.

Nothing here restates the deployment: the instance is deploy/dagster.yaml as is (copied into a
temporary $DAGSTER_HOME), the workspace is deploy/workspace.yaml itself, the MLflow, webserver
and daemon commands are read from deploy/docker-compose.yaml and the code server's from the
Dockerfile's CMD. Only addresses and paths are substituted (container names, volumes and ports
become 127.0.0.1, temporary folders and free ports); the Dagster environment is the compose
services' environment with those values replaced. A change to any of these files changes what
this test runs, so the two cannot drift apart.

The code server keeps the port of Dockerfile/workspace.yaml (4000) and listens on a random
loopback address (127.x.y.z) instead, which becomes $DAGSTER_USER_CODE_HOST.

Needs PostgreSQL on 127.0.0.1:5432 accepting user `postgres` without a password (trust); the
test creates two databases with unique names and drops them afterwards. Skipped without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import yaml
from dagster import AssetKey

from bettercat_assets.partitions import MAX_CLIENTS_PER_RUN
from bettercat_assets_tests.dagster_dev_support import times_materialized, wait_until_idle
from bettercat_assets_tests.process_support import (
    ManagedProcess,
    launch_partition_backfill,
    partition_keys,
    port_is_free,
    runs,
    start_process,
    stop_all,
    wait_for_backfill,
    wait_for_http,
    wait_for_webserver,
    wait_until,
)
from bettercat_assets_tests.process_support import free_port as _free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
FIXTURES = Path(__file__).parent / "fixtures"
VENV_BIN = Path(sys.executable).parent

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
#: delta has 3 categories: fewer than top_k=5 rows per product.
CLIENTS = ["alpha", "delta", "echo"]
#: Every client at once (compose's default is 4; the `dagster/partition` limit of
#: deploy/dagster.yaml allows one run per client anyway).
MAX_CONCURRENT_RUNS = len(CLIENTS)
STARTUP_TIMEOUT = 180
BACKFILL_TIMEOUT = 480
SCORING_TIMEOUT = 360


# --- reading the deployment files -----------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def compose_interpolate(value: object, env: Mapping[str, str] | None = None) -> str:
    """Docker Compose interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`)
    against `env` (by default none: the compose file's own defaults)."""
    env = env or {}

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.groups()
        current = env.get(name)
        if op == ":-" and not current:
            return default
        if op == "-" and current is None:
            return default
        return current or ""

    return _COMPOSE_VAR.sub(substitute, str(value))


def compose_services() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())["services"]


def compose_command(service: Mapping[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), f"exec-form command expected: {command!r}"
    return [compose_interpolate(arg) for arg in command]


def compose_env(service: Mapping[str, Any]) -> dict[str, str | None]:
    """The service's environment, interpolated; None for a variable without a value, which
    Compose passes through from the shell (or deploy/.env) and leaves unset otherwise."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {k: None if v is None else compose_interpolate(v) for k, v in raw.items()}


def dockerfile_exec_form(instruction: str) -> list[str]:
    """The exec-form command of a Dockerfile `instruction`: `CMD` (the user-code server) or
    `HEALTHCHECK` (its health check, which compose waits for before the webserver and daemon)."""
    lines = [
        line
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    [line] = [
        line.strip() for line in text.splitlines() if line.strip().startswith(f"{instruction} ")
    ]
    return json.loads(line[line.index("[") :])


def with_options(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """`args` with the value after each option in `values` replaced; every option must be there."""
    out = list(args)
    for option, value in values.items():
        assert option in out, f"{option} not in {args}"
        out[out.index(option) + 1] = value
    return out


def executable(args: Sequence[str]) -> list[str]:
    """The command with its program taken from this virtualenv (the image's /opt/venv/bin)."""
    program = VENV_BIN / args[0]
    assert program.exists(), program
    return [str(program), *args[1:]]


def env_refs(node: Any) -> set[str]:
    """Every `{env: NAME}` of a Dagster YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(set(), *(env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(set(), *(env_refs(v) for v in node))
    return set()


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_connect(dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5
    )
    conn.autocommit = True
    return conn


def drop_database(name: str) -> None:
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@contextlib.contextmanager
def temporary_database(name: str) -> Iterator[str]:
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    try:
        yield name
    finally:
        drop_database(name)


# --- the profile ----------------------------------------------------------------------------


@dataclass
class Production:
    url: str
    mlflow_uri: str
    data_prefix: Path
    dagster_home: Path
    dagster_db: str
    categories: dict[str, int]
    processes: list[ManagedProcess]
    instance: Any  # DagsterInstance on PostgreSQL
    artifacts_dir: Path  # the MLflow server's --artifacts-destination: only the server's disk
    dagster_env: dict[str, str]  # what the code server, webserver and daemon were given


def _write_clients_file(path: Path) -> dict[str, int]:
    """The fixture clients file cut down to CLIENTS; each client's category count."""
    doc = yaml.safe_load((FIXTURES / "clients.yaml").read_text())
    doc["clients"] = [c for c in doc["clients"] if c["client_id"] in CLIENTS]
    assert [c["client_id"] for c in doc["clients"]] == CLIENTS
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return {c["client_id"]: c["sample_data"]["categories"] for c in doc["clients"]}


def _loopback_host(port: int) -> str:
    """A 127.x.y.z address on which `port` is free (Linux routes all of 127/8 to lo)."""
    for _ in range(20):
        host = "127.{}.{}.{}".format(*(random.randint(1, 254) for _ in range(3)))
        if port_is_free(host, port):
            return host
    raise AssertionError(f"no loopback address with port {port} free")


@pytest.fixture(scope="module")
def postgres() -> None:
    try:
        pg_connect().close()
    except Exception as exc:  # noqa: BLE001 - any reason the server is unusable
        pytest.skip(f"no PostgreSQL at {PG_USER}@{PG_HOST}:{PG_PORT} (trust auth): {exc}")


@pytest.fixture(scope="module")
def production(postgres, tmp_path_factory) -> Iterator[Production]:
    from dagster import DagsterInstance

    services = compose_services()
    root = tmp_path_factory.mktemp("production")
    logs = root / "logs"
    suffix = uuid.uuid4().hex[:10]
    clients_file = root / "clients.yaml"
    categories = _write_clients_file(clients_file)
    data_prefix, dagster_home = root / "data", root / "dagster_home"
    dagster_home.mkdir()
    # The instance file exactly as compose mounts it; the workspace file is used in place.
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    workspace_file = DEPLOY / "workspace.yaml"
    workspace = yaml.safe_load(workspace_file.read_text())
    [grpc] = [entry["grpc_server"] for entry in workspace["load_from"]]
    code_port = int(grpc["port"])

    processes: list[ManagedProcess] = []
    with contextlib.ExitStack() as stack:
        dagster_db = stack.enter_context(temporary_database(f"bettercat_dagster_{suffix}"))
        mlflow_db = stack.enter_context(temporary_database(f"bettercat_mlflow_{suffix}"))
        # ExitStack unwinds in reverse: stop the processes before dropping their databases.
        stack.callback(stop_all, processes)

        # MLflow: the compose service's command with local addresses and paths.
        mlflow_port = _free_port()
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        artifacts_dir = root / "mlartifacts"
        mlflow_cmd = with_options(
            compose_command(services["mlflow"]),
            {
                "--backend-store-uri": (
                    f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{mlflow_db}"
                ),
                "--artifacts-destination": str(artifacts_dir),
                "--host": "127.0.0.1",
                "--port": str(mlflow_port),
            },
        )
        # One worker process instead of the default four: sizing only, on a shared machine.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
        # The server chooses the artifact location (proxied); no Spark Connect.
        for name in ("BETTERCAT_ARTIFACT_ROOT", "SPARK_REMOTE", "MLFLOW_TRACKING_URI"):
            base_env.pop(name, None)
        base_env["PATH"] = f"{VENV_BIN}{os.pathsep}{base_env.get('PATH', '')}"
        mlflow_env = {k: v for k, v in compose_env(services["mlflow"]).items() if v is not None}
        mlflow = start_process(
            "mlflow",
            executable([*mlflow_cmd, "--workers", "1"]),
            env={**base_env, **mlflow_env},
            log=logs / "mlflow.log",
            cwd=root,
        )
        processes.append(mlflow)

        # Dagster: the compose services' environment, container addresses replaced.
        code_host = _loopback_host(code_port)
        web_port = _free_port()
        local = {
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_POSTGRES_HOST": PG_HOST,
            "DAGSTER_POSTGRES_PORT": str(PG_PORT),
            "DAGSTER_POSTGRES_USER": PG_USER,
            "DAGSTER_POSTGRES_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_POSTGRES_DB": dagster_db,
            "DAGSTER_MAX_CONCURRENT_RUNS": str(MAX_CONCURRENT_RUNS),
            "DAGSTER_USER_CODE_HOST": code_host,
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "BETTERCAT_MLFLOW_UI_URL": mlflow_uri,
            "BETTERCAT_DAGSTER_UI_URL": f"http://127.0.0.1:{web_port}",
            "DATA_PREFIX": str(data_prefix),
            "BETTERCAT_CLIENTS_FILE": str(clients_file),
            "BETTERCAT_HOME": str(root / "home"),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_MASTER": "local[1]",
            # Small Spark drivers: each scoring run starts one.
            "BETTERCAT_SPARK_CONF": json.dumps(
                {"spark.driver.memory": "512m", "spark.sql.shuffle.partitions": "1"}
            ),
        }
        from_compose: dict[str, str | None] = {}
        for name in ("user_code", "webserver", "daemon"):
            from_compose.update(compose_env(services[name]))
        # Pass-through variables stay unset, as in a shell without them (base_env has none).
        passed_through = {k for k, v in from_compose.items() if v is None}
        assert not passed_through & set(base_env), sorted(passed_through & set(base_env))
        from_compose = {k: v for k, v in from_compose.items() if v is not None}
        env = {**base_env, **from_compose, **local}
        needed = env_refs(yaml.safe_load((DEPLOY / "dagster.yaml").read_text()))
        needed |= env_refs(workspace)
        assert needed <= set(local), f"set locally: {sorted(needed - set(local))}"
        # A variable compose gains must be given a local value here too (no silent drift).
        unmapped = set(from_compose) - set(local)
        assert not unmapped, f"compose sets {sorted(unmapped)}: add local values"

        # Opening the instance creates the Dagster schema (storages are built eagerly) before
        # three processes race to do it on the empty database.
        with pytest.MonkeyPatch.context() as mp:
            for name in needed:
                mp.setenv(name, local[name])
            instance = DagsterInstance.from_config(str(dagster_home))
            stack.callback(instance.dispose)

        code_cmd = with_options(
            dockerfile_exec_form("CMD"), {"-h": code_host, "-p": str(code_port)}
        )
        user_code = start_process(
            "user_code", executable(code_cmd), env=env, log=logs / "user_code.log", cwd=root
        )
        processes.append(user_code)
        # Sample data, while the code server starts.
        generated = subprocess.run(
            [str(VENV_BIN / "bettercat"), "generate-data"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert generated.returncode == 0, generated.stdout + generated.stderr
        # As compose: the webserver and daemon start once user_code passes the image's health
        # check. (Started together, the webserver can find the port closed and show the location
        # as unreachable until someone reloads it.)
        wait_until(
            lambda: "Started Dagster code proxy server" in user_code.log.read_text(),
            STARTUP_TIMEOUT,
            "code server listening",
            processes=[user_code],
        )
        health_cmd = with_options(dockerfile_exec_form("HEALTHCHECK"), {"-p": str(code_port)})
        healthy = subprocess.run(
            [*executable(health_cmd), "-h", code_host], env=env, capture_output=True, text=True
        )
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        web_cmd = with_options(
            compose_command(services["webserver"]),
            {"-h": "127.0.0.1", "-p": str(web_port), "-w": str(workspace_file)},
        )
        processes.append(
            start_process(
                "webserver", executable(web_cmd), env=env, log=logs / "webserver.log", cwd=root
            )
        )
        daemon_cmd = with_options(compose_command(services["daemon"]), {"-w": str(workspace_file)})
        processes.append(
            start_process(
                "daemon", executable(daemon_cmd), env=env, log=logs / "daemon.log", cwd=root
            )
        )

        url = f"http://127.0.0.1:{web_port}"
        wait_for_http(f"{mlflow_uri}/health", STARTUP_TIMEOUT, processes=processes)
        wait_for_webserver(url, STARTUP_TIMEOUT, processes=processes)
        yield Production(
            url=url,
            mlflow_uri=mlflow_uri,
            data_prefix=data_prefix,
            dagster_home=dagster_home,
            dagster_db=dagster_db,
            categories=categories,
            processes=processes,
            instance=instance,
            artifacts_dir=artifacts_dir,
            dagster_env=env,
        )


def test_compose_interpolation_follows_compose_rules():
    assert compose_interpolate("${A:-x}", {"A": ""}) == "x"
    assert compose_interpolate("${A-x}", {"A": ""}) == ""
    assert compose_interpolate("${A-x}") == "x"
    assert compose_interpolate("$${A} ${B}", {"B": "b"}) == "${A} b"


def clients_of(run, keys: list[str]) -> list[str]:
    """The clients a (range) run covered, from its partition tags, in partition order."""
    if "dagster/partition" in run.tags:
        return [run.tags["dagster/partition"]]
    start = keys.index(run.tags["dagster/asset_partition_range_start"])
    end = keys.index(run.tags["dagster/asset_partition_range_end"])
    return keys[start : end + 1]


def test_backfill_then_sensor_scoring_on_postgres_and_mlflow_server(production):
    from dagster import DagsterRunStatus
    from dagster_postgres import PostgresRunStorage
    from mlflow.tracking import MlflowClient

    prod = production
    # Proxied artifacts: no Dagster process is told where the MLflow server keeps them.
    assert "BETTERCAT_ARTIFACT_ROOT" not in prod.dagster_env
    told = {k: v for k, v in prod.dagster_env.items() if str(prod.artifacts_dir) in v}
    assert not told, told
    # The compose service's environment reached the server: no MLflow job runner beside it.
    [server] = [p for p in prod.processes if p.name == "mlflow"]
    assert not [cmd for cmd in server.descendants() if "mlflow.server.jobs" in cmd]
    started = time.monotonic()
    keys = partition_keys(prod.url, ["registered_model"])
    assert sorted(keys) == sorted(CLIENTS), keys

    backfill_id = launch_partition_backfill(
        prod.url, [["training_data"], ["registered_model"]], keys
    )
    wait_for_backfill(prod.url, backfill_id, BACKFILL_TIMEOUT, processes=prod.processes)
    print(f"backfill completed after {time.monotonic() - started:.0f}s")

    # The automation sensor (running by default) re-scores the new champions as one backfill.
    def every_client_scored() -> bool:
        return set(times_materialized(prod.url, "category_predictions")) >= set(CLIENTS)

    wait_until_idle(prod.url, SCORING_TIMEOUT, processes=prod.processes, until=every_client_scored)
    print(f"re-scoring done after {time.monotonic() - started:.0f}s")

    # Dagster: every run on PostgreSQL and successful; range runs, each client scored once.
    instance = prod.instance
    assert isinstance(instance.run_storage, PostgresRunStorage), type(instance.run_storage)
    records = instance.get_run_records()
    assert records and all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records), [
        (r.dagster_run.job_name, r.dagster_run.status) for r in records
    ]
    runs_needed = math.ceil(len(CLIENTS) / MAX_CLIENTS_PER_RUN)
    # The fleet view (client_fleet) follows each scoring in a run of its own; the client
    # assets' runs are the rest.
    fleet = [r for r in records if r.dagster_run.asset_selection == {AssetKey("client_fleet")}]
    every_run = {r.dagster_run.run_id for r in records}
    records = [r for r in records if r not in fleet]
    training = [
        r.dagster_run for r in records if r.dagster_run.tags.get("dagster/backfill") == backfill_id
    ]
    scoring = [
        r.dagster_run for r in records if r.dagster_run.run_id not in {t.run_id for t in training}
    ]
    assert len(training) == runs_needed and len(scoring) == runs_needed, records
    assert all(r.tags.get("dagster/backfill") for r in scoring), "the sensor emitted a backfill"
    training_run = {cid: r.run_id for r in training for cid in clients_of(r, keys)}
    scoring_run = {cid: r.run_id for r in scoring for cid in clients_of(r, keys)}
    assert sorted(training_run) == sorted(scoring_run) == sorted(CLIENTS)
    conn = pg_connect(prod.dagster_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT run_id FROM runs")
            assert {row[0] for row in cur.fetchall()} == every_run
    finally:
        conn.close()

    # MLflow, through the server: a champion per client, trained by that client's backfill run.
    client = MlflowClient(tracking_uri=prod.mlflow_uri, registry_uri=prod.mlflow_uri)
    champion_run = {}
    for client_id in CLIENTS:
        champion = client.get_model_version_by_alias(f"{client_id}_model", "champion")
        experiment = client.get_experiment_by_name(f"bettercat/{client_id}")
        assert experiment is not None, client_id
        [run] = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FINISHED", (client_id, run.info.status)
        assert run.data.tags.get("client_id") == client_id, run.data.tags
        assert run.data.tags.get("dagster_run_id") == training_run[client_id], run.data.tags
        assert champion.run_id == run.info.run_id, client_id
        assert client.list_artifacts(run.info.run_id), f"{client_id}: no artifacts on the server"
        # The server chose the locations: proxied URIs, stored under its own destination.
        assert experiment.artifact_location.startswith("mlflow-artifacts:/"), experiment
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
        champion_run[client_id] = champion.run_id
    stored = list(prod.artifacts_dir.rglob("model.skops"))
    assert len(stored) == len(CLIENTS), stored

    def days_of(client_id: str) -> list[Path]:
        return sorted(
            (prod.data_prefix / "products_categories" / f"client_id={client_id}").glob("date=*")
        )

    # Predictions: top min(5, categories) per product, written by the sensor's scoring run.
    for client_id in CLIENTS:
        days = days_of(client_id)
        assert len(days) == 1, (client_id, days)
        table = ds.dataset(days[0], format="parquet").to_table().to_pandas()
        assert len(table), client_id
        rows = table.groupby("product_id")["rank"].agg(["count", "min", "max"])
        expected = min(5, prod.categories[client_id])
        assert (rows["count"] == expected).all(), (client_id, rows["count"].value_counts())
        assert (rows["min"] == 0).all() and (rows["max"] == expected - 1).all(), client_id
        lineage = json.loads((days[0] / "_lineage.json").read_text())
        assert lineage["dagster_run_id"] == scoring_run[client_id], lineage
        assert lineage["model_run_id"] == champion_run[client_id], lineage

    # Re-scoring one client (a backfill of category_predictions, as from the UI): the output of
    # that date is replaced by the new run's; the new run process downloads the model over HTTP.
    client_id = CLIENTS[0]
    before = {p.name: len(ds.dataset(p, format="parquet").to_table()) for p in days_of(client_id)}
    rescore = launch_partition_backfill(prod.url, [["category_predictions"]], [client_id])
    wait_for_backfill(prod.url, rescore, SCORING_TIMEOUT, processes=prod.processes)
    [rescore_run] = [r["runId"] for r in runs(prod.url, tags={"dagster/backfill": rescore})]
    rescored = {p.name: json.loads((p / "_lineage.json").read_text()) for p in days_of(client_id)}
    [day] = [name for name, lin in rescored.items() if lin["dagster_run_id"] == rescore_run]
    assert rescored[day]["model_run_id"] == champion_run[client_id], rescored[day]
    [path] = [p for p in days_of(client_id) if p.name == day]
    rows = len(ds.dataset(path, format="parquet").to_table())
    assert rows == before.get(day, max(before.values())), (day, rows, before)
    print(f"re-scoring completed after {time.monotonic() - started:.0f}s")
