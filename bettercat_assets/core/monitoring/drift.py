"""Compare one scoring's counts with the model's reference profile: drift and estimated accuracy.

Every signal warns only when it is both unlikely under "nothing changed" and large enough to
matter, so a 300-product tenant and a 3M-product one are judged fairly:

* the PSI between two samples of an unchanged distribution, times nm/(n+m), is close to a
  chi-square with (bins - 1) degrees of freedom (it is the symmetric KL divergence, whose
  second-order term is Pearson's two-sample statistic). A feature warns when its PSI exceeds
  both that chi-square's quantile times (1/n + 1/m) and `min_psi`. Bins with fewer than
  5 expected products in the smaller sample are pooled first, where the approximation holds;
* the chance of a false alarm, `false_alarm_rate`, is split evenly over the client's signals
  (Bonferroni): its features (a text feature's length and vocabulary count as two), the top-1
  categories, the top-1 scores and the accuracy;
* the estimated top-5 accuracy (`core/monitoring/estimate.py`) is the test split's hit rate
  per top-5 mass bin over the products scored, with the share of products that drifted inputs
  moved credited only as an unrelated top-5 would be; its drop from the same estimate on the
  test split warns when above both `min_accuracy_drop` and its normal quantile times its
  standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from bettercat_assets.core.config.monitoring import Monitoring
from bettercat_assets.core.monitoring.estimate import binned_mean, novel_share, unrelated_rate
from bettercat_assets.core.monitoring.reference import PredictionReference, ReferenceProfile
from bettercat_assets.core.monitoring.statistic import State

#: Pool bins expected to hold fewer products than this in the smaller sample.
MIN_EXPECTED = 5.0
#: Pseudo-count added to every bin, so an empty bin has a finite PSI.
SMOOTHING = 0.5


@dataclass(frozen=True)
class Shift:
    """One distribution's distance from its reference, and the distance that would warn."""

    name: str
    psi: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.psi > self.threshold


@dataclass(frozen=True)
class DriftReport:
    """One client's scoring compared with its model's reference profile."""

    rows: int
    reference_rows: int
    features: tuple[Shift, ...]
    top1: Shift
    #: total variation distance between the top-1 category shares (share of products moved)
    top1_moved: float
    top1_score: Shift
    estimated_top5: float
    reference_top5: float
    accuracy_drop: float
    drop_threshold: float
    #: share of products the drifted inputs moved (credited as an unrelated top-5)
    novel_share: float = 0.0

    @property
    def drifted_features(self) -> list[str]:
        """Drifted features, most drifted first."""
        ranked = sorted(self.features, key=lambda s: s.psi / max(s.threshold, 1e-12), reverse=True)
        return [s.name for s in ranked if s.drifted]

    @property
    def prediction_drifted(self) -> bool:
        return self.top1.drifted or self.top1_score.drifted

    @property
    def accuracy_dropped(self) -> bool:
        return self.accuracy_drop > self.drop_threshold


def pooled(reference: np.ndarray, current: np.ndarray, smaller: int) -> tuple[np.ndarray, ...]:
    """Pool the bins expected to be too small in the smaller sample into one."""
    share = reference / max(reference.sum(), 1)
    rare = share * smaller < MIN_EXPECTED
    if rare.sum() <= 1:
        return reference, current
    keep = ~rare
    return (
        np.append(reference[keep], reference[rare].sum()),
        np.append(current[keep], current[rare].sum()),
    )


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count vectors (smoothed shares)."""
    p = (current + SMOOTHING) / (current.sum() + SMOOTHING * current.size)
    q = (reference + SMOOTHING) / (reference.sum() + SMOOTHING * reference.size)
    return float(np.sum((p - q) * np.log(p / q)))


def compare_counts(
    name: str, reference: np.ndarray, current: np.ndarray, alpha: float, floor: float
) -> Shift:
    """PSI of `current` against `reference`, with its sample-size-aware threshold."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    n, m = float(current.sum()), float(reference.sum())
    if n == 0 or m == 0:
        return Shift(name, 0.0, float("inf"))
    ref, cur = pooled(reference, current, int(min(n, m)))
    used = int(np.count_nonzero(ref + cur))
    if used <= 1:
        return Shift(name, psi(ref, cur), float("inf") if used == 0 else floor)
    critical = float(stats.chi2.isf(alpha, used - 1)) * (1.0 / n + 1.0 / m)
    return Shift(name, psi(ref, cur), float(max(critical, floor)))


def _total_variation(reference: np.ndarray, current: np.ndarray) -> float:
    if reference.sum() == 0 or current.sum() == 0:
        return 0.0
    return float(0.5 * np.abs(current / current.sum() - reference / reference.sum()).sum())


def estimate_top5(
    ref: PredictionReference, state: State, novel: float
) -> tuple[float, float, float, float]:
    """(estimate, its per-product variance, the test split's estimate, its variance) for a
    scoring's `state`; `ref` is the profile's `PredictionReference`."""
    rows = int(state["rows"][0])
    if not ref.mass_rates or "mass_counts" not in state:
        gap = ref.top5_accuracy - ref.mass_mean
        mean = float(state["mass_sum"][0]) / rows if rows else ref.mass_mean
        var = max(float(state["mass_sq_sum"][0]) / rows - mean**2, 0.0) if rows else 0.0
        return mean + gap, var, ref.mass_mean + gap, ref.mass_var
    rates = np.asarray(ref.mass_rates, dtype=np.float64)
    current, var = binned_mean(state["mass_counts"], rates)
    reference, ref_var = binned_mean(np.asarray(ref.mass_counts), rates)
    if novel > 0 and ref.label_shares:
        chance = unrelated_rate(np.asarray(ref.label_shares), state["top5_counts"], rows)
        current = (1.0 - novel) * current + novel * chance
        var *= (1.0 - novel) ** 2
    return current, var, reference, ref_var


def _feature_shifts(
    profile: ReferenceProfile, counts: np.ndarray, alpha: float, floor: float
) -> tuple[list[Shift], float]:
    """Each feature's shift, and the largest share of products a drifted feature moved."""
    shifts, start, novel = [], 0, 0.0
    for feature in profile.features:
        width = len(feature.counts)
        current = np.asarray(counts[start : start + width])
        start += width
        reference = np.array(feature.counts)
        shift = compare_counts(feature.label, reference, current, alpha, floor)
        shifts.append(shift)
        if shift.drifted:
            novel = max(novel, novel_share(reference, current))
    return shifts, novel


def compare(profile: ReferenceProfile, state: State, settings: Monitoring) -> DriftReport:
    """Judge one scoring (`state`: the merged `MonitoringStatistic` counts) against `profile`."""
    alpha = settings.false_alarm_rate / (len(profile.features) + 3)
    floor = settings.min_psi
    shifts, novel = _feature_shifts(profile, state["feature_counts"], alpha, floor)
    ref = profile.predictions
    rows = int(state["rows"][0])
    top1_ref = np.asarray(ref.top1_counts, dtype=np.float64)
    top1_cur = np.asarray(state["top1_counts"], dtype=np.float64)
    estimate, var, reference, ref_var = estimate_top5(ref, state, novel)
    se = np.sqrt(ref_var / max(ref.rows, 1) + var / max(rows, 1))
    return DriftReport(
        rows=rows,
        reference_rows=ref.rows,
        features=tuple(shifts),
        top1=compare_counts("top1_category", top1_ref, top1_cur, alpha, floor),
        top1_moved=_total_variation(top1_ref, top1_cur),
        top1_score=compare_counts(
            "top1_score", np.asarray(ref.score_counts), state["score_counts"], alpha, floor
        ),
        estimated_top5=float(np.clip(estimate, 0.0, 1.0)),
        reference_top5=ref.top5_accuracy,
        accuracy_drop=float(reference - estimate),
        drop_threshold=float(max(settings.min_accuracy_drop, stats.norm.isf(alpha) * se)),
        novel_share=float(novel),
    )
