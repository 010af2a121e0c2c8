"""Top-5 accuracy without labels: a confidence-based estimate with a share for what drifted.

At training the test split gives the actual top-5 hit rate per quantile bin of top-5 mass (the
sum of the five best scores): the model's calibration on top-5, bin by bin. A bin with few
test products is shrunk towards its mean mass plus the split's overall gap (`SHRINK`
pseudo-products), so a small tenant's table falls back on the plain mass-plus-gap estimate.

At scoring, the estimate is the mean of the bins' rates over the products scored (counted in
the pass). Those rates hold while products look like the test split's. A product that does
not, its confidence says nothing about: when inputs drift, at least the total variation
distance of a drifted feature's bins (less what sampling alone would give) is the share of
products unlike the test split's, and that share is credited only with the hit rate of a top-5
unrelated to the category, sum over c of (the test split's share of c) x (the share of scored
products whose top-5 holds c). So the estimate falls when the relation of features and labels
moves with the inputs, as a noisier catalogue does, even where the model stays confident.

The estimate itself is `drift.estimate_top5`; a profile made before the per-bin rates gives
the mean mass plus the gap there, uncorrected.

Numpy only (the reference side runs at training, the counts in Spark workers).
"""

from __future__ import annotations

import numpy as np

#: Pseudo-products that pull a mass bin's hit rate towards its mass plus the overall gap.
SHRINK = 10.0


def calibrate(
    mass: np.ndarray, hit: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, hit rates) per bin of top-5 mass on `edges`, from the test split."""
    mass = np.asarray(mass, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    # binned as the scoring pass bins (`reference.bin_counts`: float32 values, upper on ties)
    codes = np.searchsorted(edges, mass.astype(np.float32).astype(np.float64), side="right")
    counts = np.bincount(codes, minlength=edges.size + 1).astype(np.float64)
    hits = np.bincount(codes, weights=hit, minlength=edges.size + 1)
    mass_sums = np.bincount(codes, weights=mass, minlength=edges.size + 1)
    gap = float(hit.mean() - mass.mean()) if hit.size else 0.0
    overall = float(hit.mean()) if hit.size else 0.0
    prior = np.where(counts > 0, mass_sums / np.maximum(counts, 1) + gap, overall)
    rates = (hits + SHRINK * np.clip(prior, 0.0, 1.0)) / (counts + SHRINK)
    return counts.astype(np.int64), rates


def binned_mean(counts: np.ndarray, rates: np.ndarray) -> tuple[float, float]:
    """Mean and variance over products of the rate of their bin."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return 0.0, 0.0
    mean = float(counts @ rates / n)
    return mean, max(float(counts @ np.square(rates) / n) - mean**2, 0.0)


def novel_share(reference: np.ndarray, current: np.ndarray) -> float:
    """A lower bound on the share of products not drawn like the reference: the total
    variation distance of the two count vectors, less its expectation under no change."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    n, m = current.sum(), reference.sum()
    if n == 0 or m == 0:
        return 0.0
    p = reference / m
    tv = 0.5 * np.abs(current / n - p).sum()
    noise = np.sqrt(p * (1.0 - p) * (1.0 / n + 1.0 / m) / (2.0 * np.pi)).sum()
    return float(np.clip(tv - noise, 0.0, 1.0))


def unrelated_rate(label_shares: np.ndarray, top5_counts: np.ndarray, rows: int) -> float:
    """Top-5 hit rate of a top-5 independent of the category: sum of share x membership."""
    if rows == 0 or len(label_shares) != len(top5_counts):
        return 0.0
    return float(np.asarray(label_shares) @ (np.asarray(top5_counts) / rows))
