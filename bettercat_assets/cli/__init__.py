"""`bettercat` command line: generate-data, train, predict, promote, show, check-config, lineage,
mlflow-ui, serve, demo."""

from __future__ import annotations

import sys

import click

from bettercat_assets.cli.pipeline import generate_data, predict, promote, train
from bettercat_assets.cli.reports import check_config, lineage, show
from bettercat_assets.cli.services import demo, mlflow_ui, serve


class OneLineErrors(click.Group):
    """Click's own errors (a missing file, a bad option value, an unknown command) as the one
    `error:` line every other user mistake gets, instead of click's usage block."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message}{hint}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=OneLineErrors)
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
