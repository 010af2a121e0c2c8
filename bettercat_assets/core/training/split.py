"""The stratified train/test split every training and its gate use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bettercat_assets.core.data.loading import TrainingTable


def split_train_test(
    table: TrainingTable, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Stratified split; classes with a single row stay in training so test labels are known."""
    labels = table.labels.to_numpy()
    counts = table.labels.value_counts()
    singles = table.labels.isin(counts.index[counts < 2]).to_numpy()
    idx = np.flatnonzero(~singles)
    n_classes = table.labels[~singles].nunique()
    n_test = int(np.ceil(test_size * idx.size))
    stratify = labels[idx] if n_classes <= n_test <= idx.size - n_classes else None
    train_idx, test_idx = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=stratify
    )
    train_idx = np.concatenate([train_idx, np.flatnonzero(singles)])
    x = table.features
    return x.iloc[train_idx], x.iloc[test_idx], labels[train_idx], labels[test_idx]


@dataclass(frozen=True)
class Split:
    """A validated training table and its stratified split (features, labels)."""

    path: Path
    table: TrainingTable
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray

    @property
    def train_ids(self) -> pd.Series:
        """The product ids of the training split's rows."""
        return self.table.product_ids.loc[self.x_train.index]

    @property
    def test_ids(self) -> pd.Series:
        """The product ids of the test split's rows, in `x_test` order."""
        return self.table.product_ids.loc[self.x_test.index]
