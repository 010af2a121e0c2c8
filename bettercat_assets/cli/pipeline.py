"""`bettercat generate-data`, `train`, `predict` and `promote`: the model lifecycle of one client."""

from __future__ import annotations

import json
import sys
import time
from datetime import date

import click

from bettercat_assets.cli.common import (
    client_option,
    clients_file_option,
    data_layout,
    data_prefix_option,
    is_short_job,
    load_client,
    progress,
    seconds_since_process_start,
    start_spark,
    timed_call,
    tracking_settings,
    user_errors,
)


@click.command("generate-data")
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
    layout = data_layout(data_prefix)
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


@click.command()
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

    cfg = load_client(clients_file, client_id, features, model_params)
    day = training_date.date() if training_date else date.today()
    result = train_model(
        cfg, day, layout=data_layout(data_prefix), settings=tracking_settings(), progress=progress
    )
    m = result.metrics
    click.echo(
        f"{result.model_name} v{result.version}: top5_accuracy={m['top5_accuracy']:.4f} "
        f"accuracy={m['accuracy']:.4f} macro_f1={m['macro_f1']:.4f} log_loss={m['log_loss']:.4f} "
        f"(gate metric: {result.gate.metric})\n"
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


@click.command()
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
    before_command = seconds_since_process_start()
    # The JVM boots in its own process while this one imports, resolves, downloads and verifies
    # the model and decompresses the input; scoring waits for the session only then.
    with ThreadPoolExecutor(max_workers=1) as pool:
        layout = data_layout(data_prefix)
        short_job = is_short_job(layout, client_id)
        spark_start = pool.submit(timed_call, lambda: start_spark(short_job))
        from bettercat_assets.core.scoring.spark_pass import predict_categories

        cfg = load_client(clients_file, client_id)
        day = inference_date.date() if inference_date else date.today()
        settings = tracking_settings()
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
            "total": seconds_since_process_start(),
        }
        click.echo(json.dumps({k: round(v, 3) for k, v in phases.items()}), err=True)


@click.command()
@clients_file_option
@client_option
@click.option("--version", type=int, required=True, help="The version to make @champion.")
@user_errors
def promote(clients_file, client_id, version) -> None:
    """Move @champion to a given version (roll back or forward); re-scoring follows."""
    from bettercat_assets.champion_events import report_champion_change
    from bettercat_assets.core.tracking import runs as tracking

    cfg = load_client(clients_file, client_id)
    settings = tracking_settings()
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
