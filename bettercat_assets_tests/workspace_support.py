"""A small generated workspace for a test module: clients file, registry and sample data."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any


def generated_workspace(root: Path, clients_yaml: str, seed: int) -> tuple[Any, Any]:
    """Write `clients_yaml` under `root`, generate every client's sample data under
    `root/data`; return (registry, layout)."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_all

    (root / "clients.yaml").write_text(clients_yaml, encoding="utf-8")
    registry = load_clients(root / "clients.yaml")
    layout = DataLayout(root / "data")
    generate_all(registry.clients.values(), layout, seed=seed)
    return registry, layout


def cli_predict(registry: Any, layout: Any, client_id: str, day: date) -> Any:
    """`bettercat predict` for `client_id` on `day`, in-process (click's runner), against the
    workspace's clients file and data; the click result."""
    from click.testing import CliRunner

    from bettercat_assets.cli import main

    args = ["predict", "--client-id", client_id, "--inference-date", day.isoformat()]
    paths = ["--clients-file", str(registry.path), "--data-prefix", str(layout.prefix)]
    return CliRunner().invoke(main, args + paths)
