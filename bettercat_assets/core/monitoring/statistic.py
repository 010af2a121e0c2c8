"""The current profile, counted in the scoring pass by Spark's Python workers.

`MonitoringStatistic` is a pass statistic (`name`, `observe`, `merge`; see
`core/scoring/pass_stats.py`): for every client slice a worker scores, it counts the slice's
feature values on the reference bins, its top-1 categories and top-1 scores, and sums the
top-5 mass. Counts and sums add up, so tasks fold their slices and the driver merges the tasks.

Runs in Spark's Python workers: numpy only (no MLflow, scikit-learn or Dagster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bettercat_assets.core.monitoring.reference import ReferenceProfile, bin_counts, top_k_mass

State = dict[str, np.ndarray]
COUNT_KEYS = ("rows", "feature_counts", "top1_counts", "score_counts")
SUM_KEYS = ("mass_sum", "mass_sq_sum")


@dataclass(frozen=True)
class MonitorSpec:
    """What a worker needs of a client's reference profile: the bins to count on."""

    feature_edges: tuple[np.ndarray, ...]
    score_edges: np.ndarray
    n_classes: int

    @classmethod
    def of(cls, profile: ReferenceProfile) -> MonitorSpec:
        return cls(
            feature_edges=tuple(np.asarray(f.edges, dtype=np.float64) for f in profile.features),
            score_edges=np.asarray(profile.predictions.score_edges, dtype=np.float64),
            n_classes=len(profile.predictions.classes),
        )


def count_slice(spec: MonitorSpec, features: np.ndarray, proba: np.ndarray) -> State:
    """One slice's counts: features (rows, features) in the model's order, proba (rows, classes)."""
    rows = features.shape[0]
    feature_counts = [bin_counts(features[:, j], e) for j, e in enumerate(spec.feature_edges)]
    top1 = proba.argmax(axis=1) if rows else np.zeros(0, dtype=np.intp)
    score = proba.max(axis=1) if rows else np.zeros(0)
    mass = top_k_mass(proba).astype(np.float64) if rows else np.zeros(0)
    return {
        "rows": np.array([rows], dtype=np.int64),
        "feature_counts": np.concatenate(feature_counts).astype(np.int64)
        if feature_counts
        else np.zeros(0, dtype=np.int64),
        "top1_counts": np.bincount(top1, minlength=spec.n_classes).astype(np.int64),
        "score_counts": bin_counts(score, spec.score_edges)[:-1].astype(np.int64),
        "mass_sum": np.array([mass.sum()], dtype=np.float64),
        "mass_sq_sum": np.array([np.square(mass).sum()], dtype=np.float64),
    }


def merge_states(states: Sequence[State]) -> State:
    """The sum of many states of one client (empty states, from clients without a profile,
    are skipped)."""
    present = [s for s in states if s]
    if not present:
        return {}
    return {key: np.sum([s[key] for s in present], axis=0) for key in (*COUNT_KEYS, *SUM_KEYS)}


class MonitoringStatistic:
    """The monitoring counts of every client of a pass that has a reference profile."""

    name = "monitoring"

    def __init__(self, specs: Mapping[str, MonitorSpec]) -> None:
        self.specs = dict(specs)

    def observe(self, scored: Any) -> State:
        """`scored` is a `ScoredSlice`: client_id, features (float32) and proba."""
        spec = self.specs.get(scored.client_id)
        if spec is None:
            return {}
        return count_slice(spec, scored.features, scored.proba)

    def merge(self, states: Sequence[State]) -> State:
        return merge_states(states)
