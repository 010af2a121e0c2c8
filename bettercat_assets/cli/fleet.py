"""`bettercat fleet`: every client ranked by how much it needs attention, and why."""

from __future__ import annotations

from pathlib import Path

import click

from bettercat_assets.cli.common import (
    clients_file_option,
    data_layout,
    data_prefix_option,
    tracking_settings,
    user_errors,
)


@click.command()
@clients_file_option
@data_prefix_option
@click.option("--all", "show_all", is_flag=True, help="Also list the clients that need nothing.")
@click.option("--top", default=50, show_default=True, help="Rows to print at most.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the whole ranking as Parquet.",
)
@user_errors
def fleet(clients_file, data_prefix, show_all, top, output) -> None:
    """Rank the clients that need attention: drift, estimated accuracy drop, stale
    predictions, repeated gate failures, no champion, failed last scoring."""
    import pandas as pd

    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.monitoring.fleet import fleet_table, write_fleet

    registry = load_clients(clients_file)
    frame = fleet_table(registry.clients, data_layout(data_prefix), tracking_settings())
    if output is not None:
        write_fleet(frame, output)
    needing = frame[frame["attention"] > 0] if not frame.empty else frame
    click.echo(f"{len(needing)} of {len(frame)} client(s) need attention")
    shown = (frame if show_all else needing).head(top)
    if not shown.empty:
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            click.echo(shown.to_string(index=False, na_rep="-"))
    if registry.problems:
        click.echo(
            f"note: {len(registry.problems)} invalid client entr(y/ies) not ranked; "
            "`bettercat check-config` lists them"
        )
