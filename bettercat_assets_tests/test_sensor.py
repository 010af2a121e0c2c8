"""Re-scoring rules: `category_predictions` is requested exactly for the clients whose
@champion changed, once, and never for a failed gate or after a run that scored it already.

Fast: no Spark, no MLflow. The three real asset specs (keys, deps, partitions, the real
automation condition) get a stand-in body that materializes what a run selects, except the
clients told to fail their gate; roll-backs are the real promote events.
"""

import math
import warnings

import dagster as dg
import pytest

from bettercat_assets.assets import CATEGORY_PREDICTIONS, REGISTERED_MODEL, TRAINING_DATA
from bettercat_assets.assets.category_predictions import (
    RESCORE_ON_NEW_CHAMPION,
    category_predictions_spec,
)
from bettercat_assets.assets.registered_model import registered_model_spec
from bettercat_assets.assets.training_data import training_data_spec
from bettercat_assets.champion_events import champion_materialization
from bettercat_assets.partitions import (
    BACKFILL_POLICY,
    MAX_CLIENTS_PER_RUN,
    client_partitions,
    range_tags,
)

pytestmark = pytest.mark.integration

GATE_FAILS = "bettercat_test/gate_fails"  # run tag: comma-separated clients whose gate fails


@pytest.fixture(scope="module")
def client_ids(registry) -> list[str]:
    ids = list(registry.client_ids)
    assert len(ids) == 10, "the fixture clients.yaml has ten clients"
    return ids


@pytest.fixture(scope="module")
def defs(registry) -> dg.Definitions:
    partitions = client_partitions(registry)

    @dg.multi_asset(
        specs=[
            training_data_spec(partitions),
            registered_model_spec(partitions),
            category_predictions_spec(partitions),
        ],
        can_subset=True,
        backfill_policy=BACKFILL_POLICY,
    )
    def stand_in(context: dg.AssetExecutionContext):
        gate_fails = set(filter(None, context.run.tags.get(GATE_FAILS, "").split(",")))
        for key in (TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS):
            if key not in context.selected_asset_keys:
                continue
            for cid in context.partition_keys:
                if cid in gate_fails and key != TRAINING_DATA:
                    continue  # a failed gate: registered_model is not materialized
                yield dg.AssetMaterialization(asset_key=key, partition=cid)

    selection = {
        "train": [TRAINING_DATA, REGISTERED_MODEL],
        "all": [TRAINING_DATA, REGISTERED_MODEL, CATEGORY_PREDICTIONS],
        "score": [CATEGORY_PREDICTIONS],
    }
    jobs = [
        dg.define_asset_job(name, selection=keys, partitions_def=partitions)
        for name, keys in selection.items()
    ]
    return dg.Definitions(assets=[stand_in], jobs=jobs, executor=dg.in_process_executor)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


class Ticks:
    """Automation ticks as the daemon evaluates them, carrying the cursor."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def __call__(self) -> set[str]:
        with warnings.catch_warnings():
            # Dagster's own tester selects with a beta parameter; nothing of ours is beta here.
            warnings.filterwarnings("ignore", "Parameter `include_sources`", dg.BetaWarning)
            result = dg.evaluate_automation_conditions(
                defs=self.defs, instance=self.instance, cursor=self.cursor
            )
        self.cursor = result.cursor
        assert result.get_num_requested(REGISTERED_MODEL) == 0
        assert result.get_num_requested(TRAINING_DATA) == 0
        return set(result.get_requested_partitions(CATEGORY_PREDICTIONS))


def run(defs, instance, job: str, clients: list[str], gate_fails: tuple[str, ...] = ()) -> None:
    tags = {**range_tags(clients), GATE_FAILS: ",".join(gate_fails)}
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags)
    assert result.success


def test_the_condition_is_the_one_on_the_real_asset(registry):
    spec = category_predictions_spec(client_partitions(registry))
    assert spec.automation_condition is RESCORE_ON_NEW_CHAMPION


def test_a_new_instance_does_not_rescore_what_was_just_scored(defs, instance, client_ids):
    """The demo's state (every client materialized) on a brand-new automation cursor."""
    run(defs, instance, "all", client_ids)
    tick = Ticks(defs, instance)
    assert tick() == set()
    assert tick() == set()
    # ... and a new champion after that is re-scored exactly once.
    instance.report_runless_asset_event(champion_materialization("delta", "delta_model", 3, 2))
    assert tick() == {"delta"}
    assert tick() == set()


def test_training_rescores_each_new_champion_once(defs, instance, client_ids):
    tick = Ticks(defs, instance)
    assert tick() == set()
    run(defs, instance, "train", client_ids)
    assert tick() == set(client_ids)
    assert tick() == set(), "requested once: the next tick must not ask again"


def test_materialize_all_scores_each_client_once(defs, instance, client_ids):
    tick = Ticks(defs, instance)
    tick()
    run(defs, instance, "all", client_ids)
    assert tick() == set(), "the run that trained them already scored them"


def test_a_failed_gate_is_not_rescored(defs, instance, client_ids):
    tick = Ticks(defs, instance)
    run(defs, instance, "all", client_ids)
    tick()
    run(defs, instance, "train", client_ids[:4], gate_fails=(client_ids[1], client_ids[2]))
    assert tick() == {client_ids[0], client_ids[3]}


def test_a_promote_event_rescores_once(defs, instance, client_ids):
    """`bettercat promote` and the Launchpad job record this event (test_champion_lifecycle
    runs both for real)."""
    tick = Ticks(defs, instance)
    run(defs, instance, "all", client_ids)
    tick()
    # The Launchpad job and `bettercat promote` both record the same event.
    instance.report_runless_asset_event(champion_materialization("echo", "echo_model", 1, 2))
    assert tick() == {"echo"}
    assert tick() == set()


def test_unchanged_champion_records_nothing_to_rescore(tmp_path, monkeypatch):
    from bettercat_assets.champion_events import report_champion_change

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    text = report_champion_change("alpha", "alpha_model", 2, 2)
    assert "nothing to re-score" in text
    assert not list(tmp_path.iterdir()), "no instance was opened, so no event was recorded"


def test_ten_champions_in_one_tick_fit_ceil_ten_over_n_runs(defs, instance, client_ids):
    tick = Ticks(defs, instance)
    tick()
    run(defs, instance, "train", client_ids)
    requested = tick()
    assert requested == set(client_ids)
    # One backfill (emit_backfills=True) over these partitions, split by the backfill policy:
    # contiguous in clients.yaml order here, so ceil(10 / N) runs.
    assert BACKFILL_POLICY.max_partitions_per_run == MAX_CLIENTS_PER_RUN
    assert math.ceil(len(requested) / MAX_CLIENTS_PER_RUN) == 1
