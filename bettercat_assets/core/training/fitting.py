"""Fit a client's model: the featurizer (text, categorical, numeric) and its estimator.

* RandomForest on numeric features only: the forest reads the columns directly, missing
  values included (scikit-learn's native NaN handling), as before text features existed.
* RandomForest with text or categorical features: the featurizer's sparse output. A forest has
  no NaN support on sparse input, so a missing number becomes the training median plus a
  missing-indicator column; missing text is the empty text; an unseen category sets no column.
* `model: {kind: linear}`: a logistic regression on the featurizer's output, numbers
  standardised.

`FittedModel.predict_proba` is scikit-learn's own computation (the reference the compact form
is tested against); `compact` is what scoring and serving load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.features.fit import FittedFeatures, fit_features
from bettercat_assets.core.model.compact_linear import CompactLinear
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn
from bettercat_assets.core.model.scoring_model import LINEAR, ScoringModel


@dataclass(frozen=True)
class FittedModel:
    """A fitted estimator, the featurizer it reads (None: raw numeric columns) and both
    compact forms."""

    kind: str
    estimator: RandomForestClassifier | LogisticRegression | SGDClassifier
    features: FittedFeatures | None
    compact: ScoringModel
    fit_seconds: float

    @property
    def classes_(self) -> np.ndarray:
        return self.estimator.classes_

    def model_input(self, frame: pd.DataFrame) -> Any:
        """What the estimator reads for `frame` (scikit-learn's computation)."""
        if self.features is None:
            return frame
        return self.features.transform(frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """scikit-learn's class probabilities for the feature frame."""
        return self.estimator.predict_proba(self.model_input(frame))

    def input_importances(self, n_inputs: int) -> np.ndarray | None:
        """Mean decrease in impurity per input feature (a text column sums its terms');
        None for a linear model."""
        importances = getattr(self.estimator, "feature_importances_", None)
        if importances is None or self.compact.featurizer is None:
            return importances
        owners = self.compact.featurizer.column_owners()
        return np.bincount(owners, weights=importances, minlength=n_inputs)


def _compact(estimator: Any, features: FittedFeatures | None, names: list[str]) -> ScoringModel:
    featurizer = features.export() if features is not None else None
    if isinstance(estimator, LogisticRegression | SGDClassifier):
        link = "ovr" if isinstance(estimator, SGDClassifier) else "softmax"
        linear = CompactLinear.from_coefficients(
            estimator.coef_, estimator.intercept_, estimator.classes_, link
        )
        return ScoringModel(linear, featurizer)
    return ScoringModel(compact_from_sklearn(estimator), featurizer, names)


def fit_client_model(
    client: ClientConfig, x_train: pd.DataFrame, y_train: np.ndarray
) -> FittedModel:
    """Fit the client's featurizer (when it needs one) and its estimator on the training rows."""
    started = time.perf_counter()
    linear = client.model.kind == LINEAR
    features = None
    if linear or client.has_text_or_categorical:
        features = fit_features(client.feature_specs, x_train, client.text, scale_numeric=linear)
    if linear:
        estimator: Any = LogisticRegression(**client.model.linear_params)
    else:
        estimator = RandomForestClassifier(**client.model_params)
    x = features.transform(x_train) if features is not None else x_train
    estimator.fit(x, y_train)
    compact = _compact(estimator, features, list(client.features))
    return FittedModel(
        kind=client.model.kind,
        estimator=estimator,
        features=features,
        compact=compact,
        fit_seconds=time.perf_counter() - started,
    )
