"""`bettercat mlflow-ui`, `serve` and `demo`: long-running processes and the end-to-end demo."""

from __future__ import annotations

import sys

import click

from bettercat_assets.cli.common import (
    MLFLOW_JOB_EXECUTION,
    clients_file_option,
    data_prefix_option,
    load_client,
    progress,
    tracking_settings,
    user_errors,
)
from bettercat_assets.core.serving.fleet_limits import (
    DEFAULT_CACHE_MB,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_ROWS,
    DEFAULT_POLL_S,
    FleetLimits,
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="uvicorn worker processes (MLflow's own default is 4; one serves a local UI).",
)
def mlflow_ui(host: str, port: int, workers: int) -> None:
    """Start the MLflow UI on the same tracking store the pipeline uses.

    Runs this interpreter's own MLflow (`python -m mlflow`), so it works from `make`, by the
    script's full path or from any shell, whether or not the venv is on PATH. MLflow's server
    job runner (9 processes for GenAI jobs bettercat never submits) stays off unless
    $MLFLOW_SERVER_ENABLE_JOB_EXECUTION says otherwise.
    """
    import os

    from bettercat_assets.core.config.settings import default_artifact_root, default_tracking_uri
    from bettercat_assets.core.tracking.runs import experiments_url

    uri = default_tracking_uri()
    click.echo(f"MLflow UI for {uri} on {experiments_url(f'http://{host}:{port}')}", err=True)
    os.environ.setdefault(MLFLOW_JOB_EXECUTION, "false")
    args = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    args += ["--host", host, "--port", str(port), "--workers", str(workers)]
    if default_artifact_root():
        args += ["--default-artifact-root", default_artifact_root()]
    os.execv(sys.executable, args)


@click.command()
@clients_file_option
@data_prefix_option
@click.option("--seed", default=42, show_default=True, type=int)
@user_errors
def demo(clients_file, data_prefix, seed) -> None:
    """Sample data for every client, then train and score every client through Dagster."""
    from bettercat_assets.demo import run_demo

    sys.exit(run_demo(clients_file, data_prefix, seed, progress))


@click.command()
@clients_file_option
@click.option(
    "--client-id",
    default=None,
    help="Serve this client's @champion alone (MLflow's scoring server); without it, one "
    "server for every client of clients.yaml.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--mlflow-cli",
    is_flag=True,
    help="Run `mlflow models serve` (its CLI process stays beside the server) instead of "
    "MLflow's scoring server alone (with --client-id).",
)
@click.option(
    "--cache-mb",
    default=DEFAULT_CACHE_MB,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Every client: memory budget of the loaded models (least recently used go first).",
)
@click.option(
    "--max-rows",
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    type=click.IntRange(1),
    help="Every client: most products in one request (413 beyond).",
)
@click.option(
    "--max-body-mb",
    default=DEFAULT_MAX_BODY_MB,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Every client: largest request body (413 beyond).",
)
@click.option(
    "--poll-seconds",
    default=DEFAULT_POLL_S,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Every client: how often @champion is looked up.",
)
@user_errors
def serve(clients_file, client_id, host, port, workers, mlflow_cli, **fleet) -> None:
    """Serve @champion models: every client at POST /clients/<id>/invocations, or one client
    (--client-id) at POST /invocations."""
    if client_id is None:
        _serve_fleet(clients_file, host, port, workers, mlflow_cli, **fleet)
    else:
        _serve_one(clients_file, client_id, host, port, workers, mlflow_cli)


def _serve_one(clients_file, client_id, host, port, workers, mlflow_cli) -> None:
    """Exec MLflow's scoring server on one client's champion."""
    import os

    from bettercat_assets.core.config.settings import default_home
    from bettercat_assets.core.serving import server as serving

    cfg = load_client(clients_file, client_id)
    settings = tracking_settings()
    serving.check_port(client_id, host, port)
    if mlflow_cli:
        command = serving.mlflow_cli_command(settings, cfg, host, port, workers)
    else:
        model_dir = default_home() / "serving" / cfg.model_name
        command = serving.scoring_server_command(settings, cfg, host, port, model_dir, workers)
    progress(
        f"{client_id}: serving {serving.champion_model_uri(cfg)} (v{command.version}) on "
        f"http://{host}:{port}/invocations"
    )
    os.execve(command.argv[0], command.argv, command.env)


def _serve_fleet(clients_file, host, port, workers, mlflow_cli, **limits) -> None:
    """Run the fleet server (one process, one model cache) in this process."""
    from bettercat_assets.core.config.clients import clients_file_path, load_clients
    from bettercat_assets.core.config.errors import ConfigError
    from bettercat_assets.core.config.settings import default_home
    from bettercat_assets.core.serving import fleet
    from bettercat_assets.core.serving import server as serving

    if workers != 1 or mlflow_cli:
        raise ConfigError(
            "fleet server: --workers and --mlflow-cli apply to one client (--client-id); every "
            "client is served by one process with one model cache"
        )
    path = clients_file_path(clients_file).resolve()
    registry = load_clients(path)  # an unusable clients file stops here, with one line
    serving.check_port(None, host, port)
    fleet_limits = FleetLimits(**limits)
    progress(
        f"serving {len(registry.clients)} client(s) of {path} on "
        f"http://{host}:{port}/clients/<client_id>/invocations (cache {limits['cache_mb']:g} MB)"
    )
    fleet.serve(
        tracking_settings(), path, default_home() / "serving" / "fleet", fleet_limits, host, port
    )
