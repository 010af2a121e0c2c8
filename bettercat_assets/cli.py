"""`bettercat` command line: train, predict, generate-data, show, check-config, promote, lineage,
demo."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any

import click

from bettercat_assets.core.config.errors import BettercatError, TrackingUnavailableError

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays clean for tables."""
    click.echo(f"[{time.perf_counter() - _STARTED:6.1f}s] {message}", err=True)


def user_errors(func):
    """Turn user mistakes into one clear line on stderr and exit code 2, without a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BettercatError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except TrackingUnavailableError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(3)

    return wrapper


def _client(
    clients_file: str | None, client_id: str, features: str | None = None, params: str | None = None
):
    from bettercat_assets.core.config.clients import ClientConfig, _check_model_params, load_clients
    from bettercat_assets.core.config.errors import ConfigError

    cfg: ClientConfig = load_clients(clients_file).get(client_id)
    update: dict[str, Any] = {}
    if features:
        update["features"] = tuple(f.strip() for f in features.split(",") if f.strip())
        if not update["features"]:
            raise ConfigError(f"client '{client_id}': --features is empty")
    if params:
        try:
            overrides = json.loads(params)
            if not isinstance(overrides, dict):
                raise ValueError("must be a JSON object, e.g. '{\"n_estimators\": 50}'")
            merged = _check_model_params({**cfg.model_params, **overrides})
        except (json.JSONDecodeError, ValueError) as exc:
            raise ConfigError(f"client '{client_id}': --model-params: {exc}") from None
        update["model_params"] = merged
    return cfg.model_copy(update=update) if update else cfg


def _layout(data_prefix: str | None):
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.config.settings import default_data_prefix

    return DataLayout(Path(data_prefix) if data_prefix else default_data_prefix())


def _settings():
    from bettercat_assets.core.config.settings import TrackingSettings

    return TrackingSettings.from_env()


def _timed_call(func):
    """`func()` and how long it took."""
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def _seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


#: A scoring input up to this size (gzip) is a short job: its driver JVM skips the optimising
#: JIT compiler (C2), whose compile work would not pay off before the job ends.
SHORT_JOB_INPUT_BYTES = 16 << 20
#: Rows per Arrow batch of a short job: its few batches need no amortising, and smaller ones keep
#: the Python worker's peak RSS near its idle size (bench section 7).
SHORT_JOB_ARROW_BATCH = 1000
#: MLflow 3's server starts a job runner and huey consumers (9 processes, ~35 s of CPU, ~2 GB of
#: RSS between them) for GenAI jobs; bettercat submits none, so its MLflow UI and the compose
#: server turn it off.
MLFLOW_JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def _spark(short_job: bool = False):
    from bettercat_assets.core.spark.session import build_spark_session, spark_target

    kind, target = spark_target()
    progress(f"starting Spark ({target})")
    short = short_job and kind == "master"  # a Spark Connect server's JVM is not ours to tune
    conf = (
        {
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(SHORT_JOB_ARROW_BATCH),
        }
        if short
        else None
    )
    return build_spark_session(**{kind: target}, conf=conf)


def _is_short_job(layout, client_id: str) -> bool:
    from bettercat_assets.core.config.errors import BettercatError

    try:
        return layout.predict_file(client_id).stat().st_size <= SHORT_JOB_INPUT_BYTES
    except (OSError, BettercatError):
        return False  # an unknown client or a missing file: reported by what follows


clients_file_option = click.option(
    "--clients-file", envvar="BETTERCAT_CLIENTS_FILE", default=None, help="Default ./clients.yaml."
)
data_prefix_option = click.option(
    "--data-prefix", envvar="DATA_PREFIX", default=None, help="Default ./data."
)
client_option = click.option("--client-id", required=True, help="A client id from clients.yaml.")


@click.group()
def main() -> None:
    """bettercat: per-client product categorisation (top-5 categories per product)."""


@main.command("generate-data")
@clients_file_option
@data_prefix_option
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--client-id", "client_ids", multiple=True, help="Only these clients (repeatable).")
@user_errors
def generate_data(
    clients_file: str | None, data_prefix: str | None, seed: int, client_ids: tuple[str, ...]
) -> None:
    """Write deterministic sample data for every client (or the ones given)."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.errors import ConfigError
    from bettercat_assets.core.data.generate import generate_client_data

    registry = load_clients(clients_file)
    layout = _layout(data_prefix)
    configs = [registry.get(cid) for cid in client_ids] or list(registry.clients.values())
    for cfg in configs:
        result = generate_client_data(cfg, layout, seed)
        progress(
            f"{cfg.client_id}: {result.train_rows} training rows, {result.predict_rows} to "
            f"score, {result.categories} categories -> {result.train_file.parent.parent}"
        )
    if not client_ids and registry.problems:
        raise ConfigError(
            f"{registry.path}: {len(registry.problems)} problem(s), invalid clients skipped; "
            "`bettercat check-config` lists them"
        )


@main.command()
@clients_file_option
@data_prefix_option
@client_option
@click.option(
    "--training-date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default today."
)
@click.option("--features", default=None, help="Comma-separated; overrides clients.yaml.")
@click.option(
    "--model-params",
    default=None,
    help="JSON, merged over clients.yaml, e.g. '{\"n_estimators\": 50}'.",
)
@user_errors
def train(clients_file, data_prefix, client_id, training_date, features, model_params) -> None:
    """Train, track and register a client's model; exit 1 if the quality gate fails."""
    from bettercat_assets.core.training.train import train_model

    cfg = _client(clients_file, client_id, features, model_params)
    day = training_date.date() if training_date else date.today()
    result = train_model(
        cfg, day, layout=_layout(data_prefix), settings=_settings(), progress=progress
    )
    m = result.metrics
    click.echo(
        f"{result.model_name} v{result.version}: top5_accuracy={m['top5_accuracy']:.4f} "
        f"accuracy={m['accuracy']:.4f} macro_f1={m['macro_f1']:.4f} log_loss={m['log_loss']:.4f}\n"
        f"run: {result.run_url}"
    )
    if not result.gate.passed:
        click.echo(
            f"error: client '{client_id}': quality gate failed, champion unchanged "
            f"(v{result.champion_version}): {result.gate.reason}",
            err=True,
        )
        sys.exit(1)
    click.echo(f"champion: v{result.version} ({result.gate.reason})")


@main.command()
@clients_file_option
@data_prefix_option
@client_option
@click.option(
    "--inference-date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default today."
)
@click.option("--version", type=int, default=None, help="Model version; default @champion.")
@click.option("--timings", is_flag=True, help="Print where the time went (JSON, on stderr).")
@user_errors
def predict(clients_file, data_prefix, client_id, inference_date, version, timings) -> None:
    """Score a client's products with Spark and write the top-k categories as parquet."""
    from concurrent.futures import ThreadPoolExecutor

    command_start = time.perf_counter()
    before_command = _seconds_since_process_start()
    # The JVM boots in its own process while this one imports, resolves, downloads and verifies
    # the model and decompresses the input; scoring waits for the session only then.
    with ThreadPoolExecutor(max_workers=1) as pool:
        layout = _layout(data_prefix)
        short_job = _is_short_job(layout, client_id)
        spark_start = pool.submit(_timed_call, lambda: _spark(short_job))
        from bettercat_assets.core.scoring.spark_pass import predict_categories

        cfg = _client(clients_file, client_id)
        day = inference_date.date() if inference_date else date.today()
        settings = _settings()
        ready = time.perf_counter()
        progress(f"{client_id}: scoring {layout.predict_file(client_id)}")
        result = predict_categories(
            cfg,
            day,
            spark=lambda: spark_start.result()[0],
            layout=layout,
            settings=settings,
            version=version,
        )
    click.echo(
        f"{result.products_scored} products, {result.rows_written} rows, model v{result.model_version} "
        f"-> {result.output_dir}"
    )
    if timings:
        phases = {
            "python_and_cli_import": before_command,
            "imports_and_config": ready - command_start,
            "spark_start": spark_start.result()[1],
            **result.timings,
            "total": _seconds_since_process_start(),
        }
        click.echo(json.dumps({k: round(v, 3) for k, v in phases.items()}), err=True)


@main.command()
@clients_file_option
@data_prefix_option
@client_option
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default latest."
)
@click.option("--products", default=5, show_default=True)
@user_errors
def show(clients_file, data_prefix, client_id, day, products) -> None:
    """Print a client's champion, its metrics and sample predictions."""
    import pandas as pd

    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.scoring.readback import read_predictions, wide_preview
    from bettercat_assets.core.tracking import runs as tracking

    cfg = _client(clients_file, client_id)
    settings = _settings()
    client = tracking.mlflow_client(settings)
    mv = tracking.serving_version(client, cfg.model_name, client_id)
    run_id = mv.run_id or mv.tags.get("run_id")
    run = client.get_run(run_id)
    click.echo(
        f"client {client_id}: {cfg.model_name} v{mv.version} (@champion), trained "
        f"{run.data.tags.get('training_date', '?')}, run {tracking.run_url(settings, run.info.experiment_id, run_id)}"
    )
    if mv.tags.get("gate_status"):
        click.echo(f"quality gate {mv.tags['gate_status']}: {mv.tags.get('gate_reason', '')}")
    keys = [
        "top5_accuracy",
        "prior_top5_accuracy",
        "accuracy",
        "macro_f1",
        "log_loss",
        "train_rows",
        "test_rows",
        "n_classes",
    ]
    metrics = {k: run.data.metrics[k] for k in keys if k in run.data.metrics}
    click.echo(pd.DataFrame([metrics]).to_string(index=False, float_format="{:.4f}".format))
    when, frame = read_predictions(_layout(data_prefix), client_id, day.date() if day else None)
    scored_with = sorted(int(v) for v in frame["model_version"].unique())
    click.echo(
        f"\npredictions {when}: {frame['product_id'].nunique()} products, {len(frame)} rows, "
        f"model version(s) {scored_with}"
    )
    if scored_with != [int(mv.version)]:
        click.echo(
            f"note: scored with {', '.join(f'v{v}' for v in scored_with)} but v{mv.version} "
            f"serves now; re-score with "
            f"`bettercat predict --client-id {client_id}`"
        )
    click.echo(wide_preview(frame, products).to_string())
    problems = load_clients(clients_file).problems
    if problems:
        click.echo(
            f"\nnote: {len(problems)} problem(s) in other clients' entries of the clients file; "
            "`bettercat check-config` lists them"
        )


@main.command("check-config")
@clients_file_option
@user_errors
def check_config(clients_file) -> None:
    """Validate the clients file: list every problem at once; exit 2 if there is any."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.errors import ConfigError

    registry = load_clients(clients_file)
    for line in registry.problems:
        click.echo(line)
    summary = (
        f"{registry.path}: {len(registry.clients)} of {len(registry.client_ids)} client "
        f"partition(s) valid"
    )
    if registry.problems:
        raise ConfigError(f"{summary}; {len(registry.problems)} problem(s) listed above")
    click.echo(f"{summary}; no problems")


@main.command()
@clients_file_option
@client_option
@click.option("--version", type=int, required=True, help="The version to make @champion.")
@user_errors
def promote(clients_file, client_id, version) -> None:
    """Move @champion to a given version (roll back or forward); re-scoring follows."""
    from bettercat_assets.champion_events import report_champion_change
    from bettercat_assets.core.tracking import runs as tracking

    cfg = _client(clients_file, client_id)
    settings = _settings()
    client = tracking.mlflow_client(settings)
    before = tracking.champion_version(client, cfg.model_name)
    target = tracking.get_version(client, cfg.model_name, version, client_id)
    tracking.set_champion(client, cfg.model_name, version)
    previous = int(before.version) if before else None
    gate = target.tags.get("gate_status")
    click.echo(
        f"{cfg.model_name}: @champion v{previous if previous is not None else '-'} -> v{version}"
        + (f" (this version's quality gate: {gate})" if gate else "")
    )
    click.echo(report_champion_change(client_id, cfg.model_name, version, previous))


@main.command()
@click.argument("parquet_path", type=click.Path(exists=True, path_type=Path))
@user_errors
def lineage(parquet_path: Path) -> None:
    """Walk back from a prediction parquet file to its model, MLflow run, data and Dagster run.

    PARQUET_PATH is one `part-*.parquet` file (or its `date=` directory) under
    `products_categories/client_id=<id>/`.
    """
    import dataclasses

    from bettercat_assets.core.scoring.readback import lineage_of

    info = lineage_of(parquet_path, _settings())
    for key, value in dataclasses.asdict(info).items():
        click.echo(f"{key:22} {value if value is not None else '-'}")


@main.command()
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


@main.command()
@clients_file_option
@data_prefix_option
@click.option("--seed", default=42, show_default=True, type=int)
@user_errors
def demo(clients_file, data_prefix, seed) -> None:
    """Sample data for every client, then train and score every client through Dagster."""
    from bettercat_assets.demo import run_demo

    sys.exit(run_demo(clients_file, data_prefix, seed, progress))


@main.command()
@clients_file_option
@client_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5001, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--mlflow-cli",
    is_flag=True,
    help="Run `mlflow models serve` (its CLI process stays beside the server) instead of "
    "MLflow's scoring server alone.",
)
@user_errors
def serve(clients_file, client_id, host, port, workers, mlflow_cli) -> None:
    """Serve the client's @champion: POST /invocations answers with the top-k categories."""
    import os

    from bettercat_assets.core.config.settings import default_home
    from bettercat_assets.core.serving import server as serving

    cfg = _client(clients_file, client_id)
    settings = _settings()
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
