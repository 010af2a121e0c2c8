"""The champion's side of the gate: its metric, on rows it was not fit on.

The champion is re-scored on the new test split. A champion refit on all its training rows
(`refit_on_all_rows`), or one trained on an earlier file that shares products with this one,
has seen some of those rows, and would look better on them than it is. Its run's fitted-id
hashes (`core/training/fitted_ids.py`) say which: those rows are left out, and the new model is
compared with it on the rest. When too few rows are left (fewer than `MIN_UNSEEN_ROWS` or
`MIN_UNSEEN_SHARE` of the split), the champion's own metric, logged by its training run on
its held-out split, stands in. A champion without the hashes (trained before them) is scored
on the whole split, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.training.evaluation import score_metric
from bettercat_assets.core.training.fitted_ids import contains, load_fitted_ids

#: Fewer unseen test rows than this (or than the share below) and the logged metric is used.
MIN_UNSEEN_ROWS = 30
MIN_UNSEEN_SHARE = 0.10

TEST_SPLIT = "test_split"
UNSEEN_ROWS = "unseen_test_rows"
LOGGED = "logged_metric"


@dataclass(frozen=True)
class ChampionScore:
    """The champion's gate metric and what it was measured on."""

    value: float
    #: TEST_SPLIT (every new test row), UNSEEN_ROWS (the rows it was not fit on) or LOGGED
    basis: str
    #: new test rows it was fit on (left out), and the new test split's size
    seen_rows: int
    test_rows: int
    #: the new test rows it was scored on (None: all of them, or none for LOGGED)
    keep: np.ndarray | None = None

    @property
    def compared_rows(self) -> int:
        return self.test_rows - self.seen_rows if self.basis != LOGGED else 0

    def describe(self) -> str:
        """Where the value comes from, for the gate's reason."""
        if self.basis == UNSEEN_ROWS:
            return (
                f"on the {self.compared_rows} test rows it was not fit on "
                f"({self.seen_rows} left out)"
            )
        if self.basis == LOGGED:
            return (
                f"logged by its own training on its held-out split (it was fit on "
                f"{self.seen_rows} of the {self.test_rows} new test rows)"
            )
        return "on the same test split"


def min_unseen_rows(test_rows: int) -> int:
    """How many unseen test rows a row-by-row comparison needs."""
    return max(MIN_UNSEEN_ROWS, math.ceil(MIN_UNSEEN_SHARE * test_rows))


def _reads_same_features(model: object, x_test: pd.DataFrame) -> bool:
    """Same feature names, in order, and kinds (a column's dtype says numeric or text)."""
    if list(model.feature_names) != list(x_test.columns):
        return False
    return all(
        (kind == "numeric") == pd.api.types.is_numeric_dtype(x_test[name])
        for name, kind in model.feature_kinds.items()
    )


def champion_score(
    settings: TrackingSettings,
    client: MlflowClient,
    model_name: str,
    champion: int | None,
    test: tuple[pd.DataFrame, np.ndarray, pd.Series],
    metric: str,
) -> ChampionScore | None:
    """The champion's `metric` for the new test split `test` (features, labels, product ids),
    when it reads the same features; None without a champion or a comparable one."""
    from bettercat_assets.core.model.store import load_scoring_model

    if champion is None:
        return None
    x_test, y_test, ids = test
    model = load_scoring_model(settings, model_name, champion)
    if not _reads_same_features(model, x_test):
        return None
    run_id = client.get_model_version(model_name, str(champion)).run_id
    hashes = load_fitted_ids(client, run_id) if run_id else None
    seen = contains(hashes, ids) if hashes is not None else np.zeros(len(y_test), dtype=bool)
    n_seen, n = int(seen.sum()), len(y_test)
    if n_seen and n - n_seen < min_unseen_rows(n):
        logged = client.get_run(run_id).data.metrics.get(metric)
        return None if logged is None else ChampionScore(float(logged), LOGGED, n_seen, n)
    keep = ~seen if n_seen else None
    rows = x_test if keep is None else x_test[keep]
    proba = model.predict_proba({name: rows[name].to_numpy() for name in model.feature_names})
    labels = y_test if keep is None else y_test[keep]
    value = score_metric(metric, labels, proba, model.classes_)
    return ChampionScore(value, UNSEEN_ROWS if n_seen else TEST_SPLIT, n_seen, n, keep)
