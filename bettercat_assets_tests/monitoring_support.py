"""A catalogue that can be sampled again and again, with its exact posterior as the model.

The generator of `bettercat generate-data` writes one fixed sample per client; the monitoring
tests need many independent batches of the same catalogue (and shifted ones), so this mirrors
its structure in a few lines: Zipf-like categories, prototypes per category, noisy features of
several shapes (continuous, price with 2 decimals, integer counts, a 0/1 flag), missing values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp


@dataclass
class Catalogue:
    categories: int = 30
    features: int = 6
    noise: float = 1.0
    missing_share: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        weights = 1.0 / np.arange(1, self.categories + 1) ** 1.1
        self.priors = weights / weights.sum()
        self.prototypes = rng.normal(0.0, 1.0, size=(self.categories, self.features))
        self.names = [f"x{j}" for j in range(self.features)]
        self.classes = np.array([f"cat-{i:03d}" for i in range(self.categories)])

    def latent(self, n: int, rng: np.random.Generator, noise: float | None = None):
        labels = rng.choice(self.categories, size=n, p=self.priors)
        z = self.prototypes[labels] + (noise or self.noise) * rng.standard_normal(
            (n, self.features)
        )
        return labels, z

    def shape(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Latent values as the features users send (last columns: price, count, flag)."""
        x = z.copy()
        x[:, -3] = np.round(np.exp(3.0 + 0.8 * z[:, -3]), 2)  # a price
        x[:, -2] = rng.poisson(np.exp(2.0 + 0.7 * z[:, -2]))  # a count
        x[:, -1] = (z[:, -1] > 0.2).astype(float)  # a flag
        x[rng.random(x.shape) < self.missing_share] = np.nan
        return x

    def batch(self, n: int, rng: np.random.Generator, noise: float | None = None):
        """(features, labels, latent) of `n` fresh products."""
        labels, z = self.latent(n, rng, noise)
        return self.shape(z, rng), labels, z

    def posterior(self, z: np.ndarray) -> np.ndarray:
        """The Bayes posterior of the categories given the latent values: a calibrated model."""
        sq = ((z[:, None, :] - self.prototypes[None, :, :]) ** 2).sum(axis=2)
        log = np.log(self.priors)[None, :] - sq / (2 * self.noise**2)
        return np.exp(log - logsumexp(log, axis=1, keepdims=True))
