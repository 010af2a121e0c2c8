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

#: What `show` prints of a run, in order: metrics (4 decimals), then counts (integers).
SHOWN_METRICS = (
    "top5_accuracy",
    "prior_top5_accuracy",
    "accuracy",
    "prior_accuracy",
    "macro_f1",
    "log_loss",
)
SHOWN_COUNTS = ("train_rows", "test_rows", "n_classes")


def gate_line(tags: dict[str, str]) -> str:
    """The version's verdict and the metric that judged it (runs before gate_metric was
    recorded were judged on top5_accuracy)."""
    metric = tags.get("gate_metric", "top5_accuracy")
    reason = tags.get("gate_reason", "")
    judged = "" if "judged on" in reason else f" (judged on {metric})"  # the reason may say it
    return f"quality gate {tags['gate_status']}{judged}: {reason}"


def metrics_table(metrics: dict[str, float], params: dict[str, str]) -> str:
    """One row: the metrics with 4 decimals and the counts as integers (MLflow params; runs
    logged before that hold them as float metrics)."""
    import pandas as pd

    row = {k: f"{metrics[k]:.4f}" for k in SHOWN_METRICS if k in metrics}
    for key in SHOWN_COUNTS:
        value = params.get(key, metrics.get(key))
        if value is not None:
            row[key] = str(int(float(value)))
    return pd.DataFrame([row]).to_string(index=False)


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
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.scoring.readback import read_predictions, wide_preview
    from bettercat_assets.core.tracking import runs as tracking
    from bettercat_assets.core.tracking.views import runs_url

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
    click.echo(f"runs (gate columns): {runs_url(settings, run.info.experiment_id)}")
    if mv.tags.get("gate_status"):
        click.echo(gate_line(mv.tags))
    click.echo(metrics_table(run.data.metrics, run.data.params))
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
@click.argument("parquet_path", type=click.Path(path_type=Path))
@user_errors
def lineage(parquet_path: Path) -> None:
    """Walk back from a prediction parquet file to its model, MLflow run, data and Dagster run.

    PARQUET_PATH is one `part-*.parquet` file (or its `date=` directory) under
    `products_categories/client_id=<id>/`.
    """
    import dataclasses

    from bettercat_assets.core.config.errors import BettercatError
    from bettercat_assets.core.scoring.readback import lineage_of

    if not parquet_path.exists():
        raise BettercatError(f"{parquet_path}: no such file or directory")
    info = lineage_of(parquet_path, tracking_settings())
    fields = dataclasses.asdict(info)
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        click.echo(f"{key:{width}} {value if value is not None else '-'}")
