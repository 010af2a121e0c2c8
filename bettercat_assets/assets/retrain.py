"""Retraining on drift by declarative automation (clients with `retrain_on_drift: true`).

`registered_model` carries `RETRAIN_ON_DRIFT`: a custom condition (Dagster's arbitrary Python
conditions, evaluated on the code server by the `monitoring_automation` sensor) true for the
clients that want retraining (`core/monitoring/retrain.py`), requested when it becomes true and
nothing for the client is in progress. A new champion then re-scores the client as usual.
"""

from __future__ import annotations

import logging

from dagster import AutomationCondition, AutomationResult

from bettercat_assets.core.config.clients import clients_file_path, load_clients
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings, default_data_prefix
from bettercat_assets.core.monitoring.retrain import wants_retraining

log = logging.getLogger(__name__)


class DriftWithNewTrainingData(AutomationCondition):
    """True for the client partitions whose scoring drifted and whose training file is new."""

    @property
    def name(self) -> str:
        return "drifted_with_new_training_data"

    def evaluate(self, context) -> AutomationResult:
        registry = load_clients(clients_file_path())
        layout = DataLayout(default_data_prefix())
        settings = TrackingSettings.from_env()
        wanted = set()
        for cid in context.candidate_subset.expensively_compute_partition_keys():
            cfg = registry.clients.get(cid)
            try:
                if cfg is not None and wants_retraining(cfg, layout, settings):
                    wanted.add(cid)
            except (BettercatError, OSError) as exc:  # one client's problem stays its own
                log.warning("retrain_on_drift: client '%s': %s", cid, exc)
        true_subset = context.candidate_subset.compute_intersection_with_partition_keys(wanted)
        return AutomationResult(context, true_subset)


RETRAIN_ON_DRIFT = (
    DriftWithNewTrainingData().newly_true()
    & ~AutomationCondition.in_progress()
    & ~AutomationCondition.any_deps_in_progress()
).with_label("retrain once when drift meets new training data")
