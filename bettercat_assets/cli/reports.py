"""`bettercat show`, `check-config` and `lineage`: what a client has, what is wrong, where an output came from."""

from __future__ import annotations

from pathlib import Path

import click

from bettercat_assets.cli.common import (
    client_option,
    clients_file_option,
    data_layout,
    data_prefix_option,
    load_client,
    tracking_settings,
    user_errors,
)


@click.command()
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

    cfg = load_client(clients_file, client_id)
    settings = tracking_settings()
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
    when, frame = read_predictions(data_layout(data_prefix), client_id, day.date() if day else None)
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


@click.command("check-config")
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


@click.command()
@click.argument("parquet_path", type=click.Path(exists=True, path_type=Path))
@user_errors
def lineage(parquet_path: Path) -> None:
    """Walk back from a prediction parquet file to its model, MLflow run, data and Dagster run.

    PARQUET_PATH is one `part-*.parquet` file (or its `date=` directory) under
    `products_categories/client_id=<id>/`.
    """
    import dataclasses

    from bettercat_assets.core.scoring.readback import lineage_of

    info = lineage_of(parquet_path, tracking_settings())
    for key, value in dataclasses.asdict(info).items():
        click.echo(f"{key:22} {value if value is not None else '-'}")
