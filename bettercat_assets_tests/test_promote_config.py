"""The promote Launchpad offers the known client ids and rejects others before any run starts."""

from __future__ import annotations

import pytest
from dagster import DagsterInvalidConfigError, validate_run_config

from bettercat_assets.champion_events import build_promote_champion_job
from bettercat_assets.definitions import build_definitions


@pytest.fixture(scope="module")
def promote_champion_job():
    """The job as the code location builds it, for the fixture clients."""
    return build_definitions().resolve_job_def("promote_champion_job")


def run_config(client_id: str, version: int = 1) -> dict:
    return {"ops": {"promote_champion": {"config": {"client_id": client_id, "version": version}}}}


def client_id_choices(job) -> list[str]:
    """The enum values of `client_id` in the job's config schema, as the Launchpad reads them."""
    op_config = job.run_config_schema.config_type.fields["ops"].config_type
    fields = op_config.fields["promote_champion"].config_type.fields["config"].config_type.fields
    return [v.config_value for v in fields["client_id"].config_type.enum_values]


def test_client_id_is_a_choice_of_the_partitions(promote_champion_job, registry):
    assert client_id_choices(promote_champion_job) == registry.client_ids


def test_known_client_id_validates(promote_champion_job):
    resolved = validate_run_config(promote_champion_job, run_config("juliet", 3))
    assert resolved["ops"]["promote_champion"]["config"] == {"client_id": "juliet", "version": 3}


def test_unknown_client_id_is_rejected_by_config_validation(promote_champion_job):
    with pytest.raises(
        DagsterInvalidConfigError, match=r"not in enum type ClientId_[0-9a-f]{8} got nope"
    ):
        validate_run_config(promote_champion_job, run_config("nope"))


def test_job_is_built_from_any_client_list():
    job = build_promote_champion_job(["acme_fashion", "blue-hardware"])
    assert client_id_choices(job) == ["acme_fashion", "blue-hardware"]
    validate_run_config(job, run_config("blue-hardware"))
    with pytest.raises(ValueError, match="at least one client id"):
        build_promote_champion_job([])
