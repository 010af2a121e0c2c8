"""`bettercat` command line: generate-data, train, predict, promote, show, check-config, lineage,
mlflow-ui, serve, demo."""

from __future__ import annotations

import click

from bettercat_assets.cli.pipeline import generate_data, predict, promote, train
from bettercat_assets.cli.reports import check_config, lineage, show
from bettercat_assets.cli.services import demo, mlflow_ui, serve


@click.group()
def main() -> None:
    """bettercat: per-client product categorisation (top-5 categories per product)."""


main.add_command(generate_data)
main.add_command(train)
main.add_command(predict)
main.add_command(promote)
main.add_command(show)
main.add_command(check_config)
main.add_command(lineage)
main.add_command(mlflow_ui)
main.add_command(demo)
main.add_command(serve)
