"""Section 2: what one scoring worker holds for the default model, and what sklearn would.

The issue's table (100 classes, 50k rows, 100 trees; sklearn pickle size, top-5 accuracy):
min_samples_leaf=5 -> 879 MB, 0.717; max_leaf_nodes=1000 -> 173 MB, 0.669;
max_leaf_nodes=300 -> 52 MB, 0.617. The bench rebuilds those points on its own data
(same split as `train_model`) and puts the compact default beside them.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.data.loading import load_training_table
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn
from bettercat_assets.core.model.store import load_compact
from bettercat_assets.core.tracking import runs as tracking
from bettercat_assets.core.training.evaluation import top_k_accuracy
from bettercat_assets.core.training.split import split_train_test

from .workspace import Workspace

ISSUE_TABLE = {
    "min_samples_leaf=5": {"sklearn_mb": 879, "top5": 0.717},
    "max_leaf_nodes=1000": {"sklearn_mb": 173, "top5": 0.669},
    "max_leaf_nodes=300": {"sklearn_mb": 52, "top5": 0.617},
}
VARIANTS = {"max_leaf_nodes=1000": {"max_leaf_nodes": 1000}, "max_leaf_nodes=300": {"max_leaf_nodes": 300}}  # fmt: skip
GOAL_MB = 50
GOAL_TOP5 = 0.71


class _CountingSink:
    """A file object that only counts: the size of a pickle without holding its bytes."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        n = len(memoryview(data).cast("B"))
        self.size += n
        return n


def pickled_size(obj: Any) -> int:
    sink = _CountingSink()
    pickle.dump(obj, sink, protocol=pickle.HIGHEST_PROTOCOL)
    return sink.size


def vm_rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def compact_rss(ws: Workspace, cfg: ClientConfig, version: int) -> dict[str, Any]:
    """In a fresh process: RSS before/after `load_compact` and after a first prediction.

    The MLflow client and store are initialised first (a worker needs them for any model),
    so the delta is the model itself.
    """
    client = tracking.mlflow_client(ws.settings)
    client.get_model_version(cfg.model_name, str(version))
    before = vm_rss_kb()
    forest = load_compact(ws.settings, cfg.model_name, version)
    loaded = vm_rss_kb()
    forest.predict_proba(np.zeros((1000, forest.n_features_in_), dtype=np.float32))
    predicted = vm_rss_kb()
    return {
        "nbytes_mb": forest.nbytes / 1e6,
        "rss_delta_load_mb": (loaded - before) / 1024,
        "rss_delta_after_first_predict_mb": (predicted - before) / 1024,
        "process_rss_mb": predicted / 1024,
        "n_trees": forest.n_trees,
        "pid": os.getpid(),
    }


def fit_variant(ws: Workspace, cfg: ClientConfig, override: dict[str, Any]) -> dict[str, Any]:
    """Fit the default params plus `override` on `train_model`'s split; size and top-5."""
    table = load_training_table(cfg, ws.layout.train_file(cfg.client_id))
    seed = int(cfg.model_params.get("random_state") or 0)
    x_train, x_test, y_train, y_test = split_train_test(table, cfg.test_size, seed)
    params = {**cfg.model_params, **override}
    t0 = time.perf_counter()
    forest = RandomForestClassifier(**params).fit(x_train, y_train)
    fit_s = time.perf_counter() - t0
    proba = forest.predict_proba(x_test)
    compact = compact_from_sklearn(forest)
    return {
        "params": params,
        "fit_s": fit_s,
        "sklearn_pickle_mb": pickled_size(forest) / 1e6,
        "compact_mb": compact.nbytes / 1e6,
        "top5": top_k_accuracy(y_test, proba, forest.classes_, 5),
        "nodes": int(sum(e.tree_.node_count for e in forest.estimators_)),
    }
