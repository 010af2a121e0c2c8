"""The code location loads and validates the way `dagster dev` and the CLI load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate():
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "bettercat_assets.definitions"],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_partitions_follow_clients_file(registry):
    from bettercat_assets_tests.dagster_support import pipeline_defs

    defs = pipeline_defs()
    for name in ("client_pipeline", "train_clients", "score_clients"):
        job = defs.resolve_job_def(name)
        assert job.partitions_def.get_partition_keys() == registry.client_ids, name


def test_definitions_are_built_when_loaded_not_at_import():
    """`defs` is the `@dg.definitions` loader; each call reads the clients file anew."""
    from dagster import Definitions

    from bettercat_assets import definitions

    assert not isinstance(definitions.defs, Definitions)
    assert isinstance(definitions.defs(), Definitions)


def test_adding_a_client_adds_a_partition_without_code_change(tmp_path):
    source = Path(os.environ["BETTERCAT_CLIENTS_FILE"]).read_text()
    extra = source + "  - {client_id: zulu_new, features: [price]}\n"
    clients = tmp_path / "clients.yaml"
    clients.write_text(extra)
    code = (
        "from bettercat_assets.definitions import defs;"
        "print(defs().resolve_job_def('client_pipeline').partitions_def.get_partition_keys()[-1])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BETTERCAT_CLIENTS_FILE": str(clients)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == "zulu_new", result.stderr


def test_descriptions_shown_in_the_ui_have_no_markdown_backticks():
    """Dagster's Catalog lists descriptions as plain text: a backtick would show as is."""
    from bettercat_assets.definitions import build_definitions

    defs = build_definitions()
    described = {}
    for assets_def in defs.assets:
        described[f"multi-asset {assets_def.node_def.name}"] = assets_def.node_def.description
        for spec in assets_def.specs:
            described[f"asset {spec.key.to_user_string()}"] = spec.description
        for check in assets_def.check_specs:
            described[f"check {check.name}"] = check.description
    for kind, defs_list in (("job", defs.jobs), ("sensor", defs.sensors)):
        described.update({f"{kind} {d.name}": d.description for d in defs_list})
    described.update({f"schedule {s.name}": s.description for s in defs.schedules})
    assert len(described) >= 20 and all(described.values()), described
    with_backticks = {name: text for name, text in described.items() if "`" in text}
    assert not with_backticks
