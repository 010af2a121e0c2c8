"""The current profile, counted in the scoring pass by Spark's Python workers.

`MonitoringStatistic` is a pass statistic (`name`, `observe`, `merge`; see
`core/scoring/pass_stats.py`): for every client slice a worker scores, it counts the slice's
feature values on the reference bins (numbers from the slice's float32 features, text and
categorical cells from its string columns, text coverage against the shipped featurizer's word
vocabulary), its top-1 categories and top-1 scores, its products per top-5 mass bin and per
category in the top-5, and sums the top-5 mass. Counts and sums add up, so tasks fold their
slices and the driver merges the tasks.

Runs in Spark's Python workers: numpy only (no MLflow, scikit-learn or Dagster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bettercat_assets.core.monitoring import strings
from bettercat_assets.core.monitoring.reference import TOP_K, ReferenceProfile, bin_counts

State = dict[str, np.ndarray]
COUNT_KEYS = ("rows", "feature_counts", "top1_counts", "score_counts", "mass_counts", "top5_counts")
SUM_KEYS = ("mass_sum", "mass_sq_sum")


@dataclass(frozen=True)
class FeatureCounter:
    """How one reference feature is counted: its kind, column and bins (or top values)."""

    name: str
    kind: str
    edges: np.ndarray
    index: dict[str, int]


@dataclass(frozen=True)
class MonitorSpec:
    """What a worker needs of a client's reference profile: the bins to count on."""

    counters: tuple[FeatureCounter, ...]
    score_edges: np.ndarray
    n_classes: int
    mass_edges: np.ndarray

    @classmethod
    def of(cls, profile: ReferenceProfile) -> MonitorSpec:
        counters = tuple(
            FeatureCounter(
                f.name,
                f.kind,
                np.asarray(f.edges, dtype=np.float64),
                {v: i for i, v in enumerate(f.values)},
            )
            for f in profile.features
        )
        return cls(
            counters=counters,
            score_edges=np.asarray(profile.predictions.score_edges, dtype=np.float64),
            n_classes=len(profile.predictions.classes),
            mass_edges=np.asarray(profile.predictions.mass_edges, dtype=np.float64),
        )


def _feature_counts(
    spec: MonitorSpec,
    features: np.ndarray,
    columns: Mapping[str, Any],
    vocabulary: strings.Vocabulary | None,
) -> np.ndarray:
    """Every reference feature's counts, concatenated in the profile's order."""
    parts, numeric, measured = [], 0, {}
    for counter in spec.counters:
        if counter.kind == "numeric":
            parts.append(bin_counts(features[:, numeric], counter.edges))
            numeric += 1
        elif counter.kind == "categorical":
            parts.append(strings.category_counts(columns[counter.name], counter.index))
        else:
            if counter.name not in measured:
                known, lowercase = strings.vocabulary_of(vocabulary, counter.name)
                measured[counter.name] = strings.word_measures(
                    columns[counter.name], known, lowercase
                )
            tokens, coverage = measured[counter.name]
            values = tokens if counter.kind == "text_length" else coverage
            parts.append(bin_counts(values, counter.edges))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def _top5(
    proba: np.ndarray, n_classes: int, ranked: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(top-1 class, top-1 score, top-5 mass per row, products per class among their five
    best). `ranked`: the scorer's top-k indices, best first, reused when they hold five."""
    k = min(TOP_K, proba.shape[1])
    if ranked is not None and ranked.ndim == 2 and ranked.shape[1] >= k:
        best = ranked[:, :k]
        top1 = ranked[:, 0]
    else:
        best = np.argpartition(proba, proba.shape[1] - k, axis=1)[:, -k:]
        top1 = proba.argmax(axis=1)
    chosen = np.take_along_axis(proba, best, axis=1)
    score = np.take_along_axis(proba, top1[:, None], axis=1)[:, 0]
    mass = chosen.sum(axis=1).astype(np.float64)
    counts = np.bincount(best.ravel(), minlength=n_classes).astype(np.int64)
    return top1, score, mass, counts


def count_slice(
    spec: MonitorSpec,
    features: np.ndarray,
    proba: np.ndarray,
    columns: Mapping[str, Any] | None = None,
    vocabulary: strings.Vocabulary | None = None,
    ranked: np.ndarray | None = None,
) -> State:
    """One slice's counts: features (rows, numeric features) in the model's order, proba
    (rows, classes), `columns` the text and categorical cells by feature name, `vocabulary`
    the shipped featurizer's word vocabulary of a text column, `ranked` the scorer's top-k
    indices (reused instead of ranking the classes again)."""
    rows = features.shape[0]
    if rows:
        top1, score, mass, top5 = _top5(proba, spec.n_classes, ranked)
    else:
        top1, score = np.zeros(0, dtype=np.intp), np.zeros(0)
        mass, top5 = np.zeros(0), np.zeros(spec.n_classes)
    return {
        "rows": np.array([rows], dtype=np.int64),
        "feature_counts": _feature_counts(spec, features, columns or {}, vocabulary),
        "top1_counts": np.bincount(top1, minlength=spec.n_classes).astype(np.int64),
        "score_counts": bin_counts(score, spec.score_edges)[:-1].astype(np.int64),
        "mass_counts": bin_counts(mass, spec.mass_edges)[:-1].astype(np.int64),
        "top5_counts": np.asarray(top5, dtype=np.int64),
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
        """`scored` is a `ScoredSlice`: client_id, features (float32), proba, and the text and
        categorical cells (`strings`) with the featurizer's word vocabulary (`vocabulary`)."""
        spec = self.specs.get(scored.client_id)
        if spec is None:
            return {}
        return count_slice(
            spec,
            scored.features,
            scored.proba,
            getattr(scored, "strings", None),
            getattr(scored, "vocabulary", None),
            getattr(scored, "best", None),
        )

    def merge(self, states: Sequence[State]) -> State:
        return merge_states(states)
