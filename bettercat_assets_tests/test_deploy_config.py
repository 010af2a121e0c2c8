"""Static checks of the deployment files: Dockerfile, deploy/*.yaml, workspace.yaml, Makefile.

Fast and offline: no Docker engine and no database. Dagster's own config schemas validate the
instance and workspace files; the compose file is checked structurally (and with
`docker compose config` when the plugin is installed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._serdes import class_from_code_pointer
from dagster._serdes.config_class import ConfigurableClassData
from dagster_postgres.utils import pg_url_from_config
from sqlalchemy.engine import make_url

from bettercat_assets.cli.common import MLFLOW_JOB_EXECUTION

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTALL_SCRIPT = "deploy/install.sh"

#: Values for the variables deploy/dagster.yaml reads, as the compose file sets them.
PG_ENV = {
    "DAGSTER_POSTGRES_HOST": "postgres",
    "DAGSTER_POSTGRES_PORT": "5432",
    "DAGSTER_POSTGRES_USER": "bettercat",
    "DAGSTER_POSTGRES_PASSWORD": "s3cret",
    "DAGSTER_POSTGRES_DB": "dagster",
    "DAGSTER_MAX_CONCURRENT_RUNS": "7",
}
DAGSTER_SERVICES = ("user_code", "webserver", "daemon")


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _env_refs(node: Any) -> set[str]:
    """Every `{env: NAME}` in a parsed YAML document."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(_env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node)) if node else set()
    return set()


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile():
        if instruction == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value
    return env


def _docker_cmd() -> list[str]:
    [cmd] = [args for instruction, args in _dockerfile() if instruction == "CMD"]
    return json.loads(cmd)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(DEPLOY / "docker-compose.yaml")


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _volume_specs(service: dict[str, Any]) -> list[tuple[str, str]]:
    specs = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            specs.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            specs.append((source, target))
    return specs


# --- install: one script for the Makefile, CI and the image ---------------------------------


def test_the_venv_holds_exactly_the_pinned_versions():
    """Whatever installed this venv (uv, or pip as the fallback), every pin in constraints.txt
    is what is installed."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    pins = {
        canonicalize_name(name): version.strip()
        for name, version in (
            line.split("==", 1)
            for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")
        )
    }
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()
    }
    wrong = {
        name: (version, installed.get(name))
        for name, version in pins.items()
        if installed.get(name) != version
    }
    assert len(pins) > 100 and not wrong, wrong


def test_makefile_and_dockerfile_install_through_the_same_script():
    script = ROOT / INSTALL_SCRIPT
    assert os.access(script, os.X_OK), f"{INSTALL_SCRIPT} must be executable"
    body = script.read_text()
    assert (
        'uv" pip install --quiet --python "$venv/bin/python" -c constraints.txt -e \'.[dev]\''
        in body
    )
    assert "uv_install --offline 2>/dev/null || uv_install" in body  # cache first, then online
    # the fallback
    assert "/bin/pip\" install --quiet --no-compile -c constraints.txt -e '.[dev]'" in body
    assert '-m compileall -q -j 0 "$site_packages"' in body  # bytecode, as pip compiles it

    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert rule, "Makefile has no $(STAMP) rule"
    recipe = rule.group(1)
    assert INSTALL_SCRIPT in recipe
    assert "pip install" not in recipe, "the Makefile must install only through deploy/install.sh"

    runs = [args for instruction, args in _dockerfile() if instruction == "RUN"]
    assert any(INSTALL_SCRIPT in args for args in runs), "the Dockerfile must RUN deploy/install.sh"
    assert not any("pip install" in args for args in runs), "the Dockerfile must not pip install"


def test_dockerfile_copies_what_the_install_needs():
    instructions = _dockerfile()
    for instruction, args in instructions:
        if instruction == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    copied = " ".join(args for instruction, args in instructions if instruction == "COPY")
    for needed in ("pyproject.toml", "constraints.txt", "README.md", INSTALL_SCRIPT):
        assert needed in copied
    assert instructions[0][0] == "FROM" and "python:3.11" in instructions[0][1]
    assert any("openjdk-17-jre-headless" in a for i, a in instructions if i == "RUN")
    assert any(i == "USER" and a not in ("root", "0") for i, a in instructions)
    env = _docker_env()
    assert env["PYSPARK_PYTHON"].endswith("/bin/python")
    assert env["PATH"].startswith(env["PYSPARK_PYTHON"].removesuffix("/python"))


def test_dockerfile_serves_the_code_location_on_4000():
    cmd = _docker_cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-p") + 1] == "4000"
    assert cmd[cmd.index("-m") + 1] == _pyproject_dagster()["module_name"]
    instructions = _dockerfile()
    assert ("EXPOSE", "4000") in instructions
    [health] = [args for instruction, args in instructions if instruction == "HEALTHCHECK"]
    assert "grpc-health-check" in health and "4000" in health


# --- Dagster instance files -------------------------------------------------------------------


def _instance_config(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    shutil.copy(source, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    return config


def _resolve(section: dict[str, Any]) -> tuple[type, dict[str, Any]]:
    """Import a configurable class as the instance does (`dagster.core` is an alias of
    `dagster._core`) and resolve its config, `env:` values included, against its schema."""
    data = ConfigurableClassData(section["module"], section["class"], "{}")
    cls = class_from_code_pointer(data.module_name, data.class_name)
    result = process_config(cls.config_type(), section.get("config") or {})
    assert result.success, result.errors
    return cls, result.value


def test_production_instance_config_validates(tmp_path, monkeypatch):
    config = _instance_config(tmp_path, DEPLOY / "dagster.yaml", monkeypatch, PG_ENV)
    assert _env_refs(_yaml(DEPLOY / "dagster.yaml")) == set(PG_ENV)

    for key, cls_name in [
        ("run_storage", "PostgresRunStorage"),
        ("event_log_storage", "PostgresEventLogStorage"),
        ("schedule_storage", "PostgresScheduleStorage"),
    ]:
        cls, value = _resolve(config[key])
        assert cls.__name__ == cls_name
        url = pg_url_from_config(value)
        assert url == "postgresql+psycopg2://bettercat:s3cret@postgres:5432/dagster"
        # The driver SQLAlchemy will use is importable (a bare postgresql:// would need psycopg 3).
        make_url(url).get_dialect().import_dbapi()

    cls, coordinator = _resolve(config["run_coordinator"])
    assert cls.__name__ == "QueuedRunCoordinator"
    assert coordinator["max_concurrent_runs"] == 7
    limits = coordinator["tag_concurrency_limits"]
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in (limits)

    assert config["run_retries"]["enabled"] is True
    assert config["run_retries"]["max_retries"] == 1
    assert config["telemetry"]["enabled"] is False


def test_local_instance_config_validates(tmp_path, monkeypatch):
    for key in PG_ENV:
        monkeypatch.delenv(key, raising=False)
    config = _instance_config(tmp_path, DEPLOY / "dagster.local.yaml", monkeypatch, {})
    assert not {"storage", "run_storage", "event_log_storage", "schedule_storage"} & set(config)
    cls, coordinator = _resolve(config["run_coordinator"])
    assert cls.__name__ == "QueuedRunCoordinator"
    assert coordinator["max_concurrent_runs"] == 2
    assert config["run_retries"] == {**config["run_retries"], "enabled": True, "max_retries": 1}
    assert config["telemetry"]["enabled"] is False

    makefile = (ROOT / "Makefile").read_text()
    assert "deploy/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml" in makefile


# --- workspaces -----------------------------------------------------------------------------


def _pyproject_dagster() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]


def test_workspaces_validate_and_name_the_same_location(monkeypatch):
    monkeypatch.setenv("DAGSTER_USER_CODE_HOST", "user_code")
    expected = _pyproject_dagster()

    grpc = process_workspace_config(_yaml(DEPLOY / "workspace.yaml"))
    assert grpc.success, grpc.errors
    [entry] = grpc.value["load_from"]
    server = entry["grpc_server"]
    assert server == {**server, "host": "user_code", "port": 4000}
    assert server["location_name"] == expected["code_location_name"]

    local = process_workspace_config(_yaml(ROOT / "workspace.yaml"))
    assert local.success, local.errors
    [entry] = local.value["load_from"]
    module = entry["python_module"]
    assert module["module_name"] == expected["module_name"]
    assert module["location_name"] == expected["code_location_name"]


# --- docker compose -----------------------------------------------------------------------------


def test_compose_services_are_complete(compose):
    services = compose["services"]
    assert {"postgres", "mlflow", "user_code", "webserver", "daemon"} <= set(services)
    declared_volumes = set(compose.get("volumes") or {})

    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: no image or build"
        if "build" in service:
            build = service["build"]
            context = DEPLOY / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
            if name != "user_code":  # user_code runs the image's CMD (the gRPC code server)
                assert service.get("command"), f"{name}: runs the bettercat image without a command"

        depends = service.get("depends_on") or {}
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if isinstance(depends, dict):
                condition = depends[dependency].get("condition", "service_started")
                assert condition in {
                    "service_started",
                    "service_healthy",
                    "service_completed_successfully",
                }
                if condition == "service_healthy":
                    has_check = "healthcheck" in services[dependency] or (
                        "build" in services[dependency]  # the Dockerfile's HEALTHCHECK
                    )
                    assert has_check, f"{name} waits for {dependency}, which has no health check"

        for source, _target in _volume_specs(service):
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: bind mount of missing {source}"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"


def test_compose_wires_dagster_processes(compose):
    services = compose["services"]
    image_env = _docker_env()
    dagster_home = image_env["DAGSTER_HOME"]
    needed = _env_refs(_yaml(DEPLOY / "dagster.yaml"))
    workspace_env = _env_refs(_yaml(DEPLOY / "workspace.yaml"))

    for name in DAGSTER_SERVICES:
        service = services[name]
        env = _service_env(service)
        missing = needed - set(env)
        assert not missing, f"{name} lacks {sorted(missing)} needed by deploy/dagster.yaml"
        mounts = dict((target, source) for source, target in _volume_specs(service))
        assert mounts.get(f"{dagster_home}/dagster.yaml") == "./dagster.yaml", name
        assert f"{dagster_home}/storage" in mounts, f"{name}: no shared Dagster storage volume"

    for name in ("webserver", "daemon"):
        service = services[name]
        assert workspace_env <= set(_service_env(service)), name
        command = service["command"]
        workspace = command[command.index("-w") + 1]
        mounts = {target: source for source, target in _volume_specs(service)}
        assert mounts.get(workspace) == "./workspace.yaml", f"{name}: -w {workspace} not mounted"
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert _service_env(services["webserver"])["DAGSTER_USER_CODE_HOST"] == "user_code"

    user_code = _service_env(services["user_code"])
    assert user_code["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert user_code["DATA_PREFIX"] == "/data"
    mounts = {target: source for source, target in _volume_specs(services["user_code"])}
    assert mounts[user_code["BETTERCAT_CLIENTS_FILE"]] == "../clients.yaml"
    assert mounts["/data"] in compose["volumes"]


def test_compose_mlflow_server(compose):
    mlflow = compose["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    backend = command[command.index("--backend-store-uri") + 1]
    assert backend.startswith("postgresql+psycopg2://")
    assert "--serve-artifacts" in command
    destination = command[command.index("--artifacts-destination") + 1]
    assert destination in {target for _source, target in _volume_specs(mlflow)}
    assert command[command.index("--port") + 1] == "5000"
    assert "mlflow:5000" in command[command.index("--allowed-hosts") + 1]
    assert _service_env(mlflow)[MLFLOW_JOB_EXECUTION] == "false", "no MLflow job runner"
    assert "pg_isready" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])


def test_compose_serving_runs_the_fleet_server_against_mlflow(compose):
    """The serving service is `bettercat serve` for every client (no --client-id), on the MLflow
    server, with the clients file mounted, an HTTP health check on its own port and a memory
    limit above its cache budget; its options are ones the CLI accepts."""
    from click.testing import CliRunner

    from bettercat_assets.cli import main

    serving = compose["services"]["serving"]
    command = serving["command"]
    assert command[:2] == ["bettercat", "serve"] and "--client-id" not in command
    port = command[command.index("--port") + 1]
    assert any(p.endswith(f":{port}:{port}") for p in serving["ports"])
    health = " ".join(serving["healthcheck"]["test"])
    assert f"localhost:{port}/health" in health
    env = _service_env(serving)
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert serving["depends_on"]["mlflow"]["condition"] == "service_healthy"
    mounts = {target: source for source, target in _volume_specs(serving)}
    assert mounts[env["BETTERCAT_CLIENTS_FILE"]] == "../clients.yaml"
    assert env["BETTERCAT_HOME"] in mounts, "downloaded models are kept on a volume"
    budget_mb = float(re.sub(r"\$\{\w+:-(\d+)\}", r"\1", command[command.index("--cache-mb") + 1]))
    limit = re.sub(r"\$\{\w+:-(\w+)\}", r"\1", serving["mem_limit"])
    assert float(limit.rstrip("g")) * 1024 >= budget_mb + 512, "room for the interpreter"
    options = {o for p in main.commands["serve"].params for o in p.opts}
    assert {a for a in command if a.startswith("--")} <= options
    help_text = CliRunner().invoke(main, ["serve", "--help"]).stdout
    assert "--cache-mb" in help_text


def _docker_compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file():
    command = _docker_compose()
    if command is None:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [*command, "-f", str(DEPLOY / "docker-compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
