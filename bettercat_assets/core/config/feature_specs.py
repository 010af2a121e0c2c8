"""Feature kinds, text settings and the model kind of a client in `clients.yaml`.

A `features` entry is a column name (numeric) or a mapping with a kind::

    features:
      - price
      - {name: title, kind: text}
      - {name: brand, kind: categorical}

`text` (under `defaults` or per client) sets how text columns become TF-IDF features;
`model: {kind: linear}` picks a logistic regression instead of the default RandomForest.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.ensemble import RandomForestClassifier

FEATURE_KINDS = ("numeric", "text", "categorical")
MODEL_KINDS = ("random_forest", "linear")
RESERVED_COLUMNS = frozenset({"product_id", "category_id"})
RANDOM_FOREST_PARAMS = frozenset(RandomForestClassifier().get_params())


#: Bounded trees by default: unbounded leaves cost GBs per model (see README, "Model size").
DEFAULT_MODEL_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "min_samples_leaf": 5,
    "max_features": "sqrt",
    "n_jobs": -1,
    "random_state": 42,
}


#: Text makes tens of thousands of sparse columns, each informative for few products: forests
#: need leaves of one product to reach their accuracy there (bench/RESULTS.md, `text`).
DEFAULT_TEXT_MODEL_PARAMS: dict[str, Any] = {"min_samples_leaf": 1}


@functools.cache
def _param_names(estimator: type) -> frozenset[str]:
    return frozenset(estimator().get_params())


def _check_estimator_params(
    estimator: type, params: dict[str, Any], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Reject parameters `estimator` does not know (with a did-you-mean) and invalid values
    (validated over `defaults`), naming the key; return `params`."""
    known = _param_names(estimator)
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown {estimator.__name__} parameter '{key}'{hint}")
    try:
        estimator(**{**(defaults or {}), **params})._validate_params()
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    return params


def _check_model_params(params: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown RandomForestClassifier parameters and invalid values, naming the key."""
    return _check_estimator_params(RandomForestClassifier, params)


#: What a `model: {kind: linear}` client fits unless its `params` say otherwise.
DEFAULT_LINEAR_PARAMS: dict[str, Any] = {"C": 10.0, "max_iter": 100}


def _did_you_mean(value: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class FeatureSpec(BaseModel):
    """One feature column and how it is read: a number, free text or a category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str = "numeric"

    @model_validator(mode="after")
    def _known_kind(self) -> FeatureSpec:
        if not self.name or not self.name.strip():
            raise ValueError("feature names must not be empty")
        if self.name in RESERVED_COLUMNS:
            raise ValueError(f"'{self.name}' is reserved and cannot be a feature")
        if self.kind not in FEATURE_KINDS:
            raise ValueError(
                f"feature '{self.name}': unknown kind '{self.kind}'"
                f"{_did_you_mean(str(self.kind), FEATURE_KINDS)}; kinds: {', '.join(FEATURE_KINDS)}"
            )
        return self


def parse_features(entries: list[Any]) -> list[FeatureSpec]:
    """`features` as written (names or mappings) -> specs; ValueError naming the entry."""
    specs: list[FeatureSpec] = []
    for entry in entries:
        if isinstance(entry, str):
            specs.append(FeatureSpec(name=entry))
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - {"name", "kind"})
            if unknown:
                hint = _did_you_mean(str(unknown[0]), ("name", "kind"))
                raise ValueError(f"feature {entry!r}: unknown key '{unknown[0]}'{hint}")
            if not isinstance(entry.get("name"), str):
                raise ValueError(f"feature {entry!r}: 'name' must be a column name")
            if not isinstance(entry.get("kind", "numeric"), str):
                raise ValueError(
                    f"feature '{entry['name']}': 'kind' must be one of {FEATURE_KINDS}"
                )
            specs.append(FeatureSpec(**entry))
        else:
            raise ValueError(
                f"feature {entry!r}: expected a column name or {{name: ..., kind: ...}}"
            )
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate feature(s): {', '.join(dupes)}")
    return specs


class TextSettings(BaseModel):
    """How each text column becomes features: TF-IDF on words and on characters within words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: word n-grams (min, max); tokens are runs of 2+ word characters, lower-cased
    word_ngrams: tuple[int, int] = (1, 2)
    #: character n-grams inside space-padded words (scikit-learn's `char_wb`); null: off
    char_ngrams: tuple[int, int] | None = (2, 4)
    #: keep at most this many terms per column and analyzer (the most frequent); null: all
    max_features: int | None = Field(100_000, ge=1, le=2_000_000)
    #: a term must occur in at least this many training products
    min_df: int = Field(2, ge=1)
    #: 1 + log(count) instead of the count
    sublinear_tf: bool = True
    lowercase: bool = True

    @model_validator(mode="after")
    def _ranges(self) -> TextSettings:
        for key in ("word_ngrams", "char_ngrams"):
            value = getattr(self, key)
            if value is not None and not (1 <= value[0] <= value[1] <= 8):
                raise ValueError(f"{key}: need 1 <= min <= max <= 8, got {list(value)}")
        return self


class ModelChoice(BaseModel):
    """Which model a client fits: RandomForest (`model_params`) or a logistic regression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["random_forest", "linear"] = "random_forest"
    #: LogisticRegression parameters for `kind: linear` (merged over DEFAULT_LINEAR_PARAMS)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _known_kind(cls, data: Any) -> Any:
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind not in MODEL_KINDS:
            raise ValueError(
                f"unknown model kind '{kind}'{_did_you_mean(kind, MODEL_KINDS)}; "
                f"kinds: {', '.join(MODEL_KINDS)}"
            )
        return data

    @model_validator(mode="after")
    def _linear_params(self) -> ModelChoice:
        if self.params:
            check_linear_params(self.params)
        return self

    @property
    def linear_params(self) -> dict[str, Any]:
        return {**DEFAULT_LINEAR_PARAMS, **self.params}


def check_linear_params(params: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown or invalid LogisticRegression parameters, naming the key."""
    from sklearn.linear_model import LogisticRegression

    return _check_estimator_params(LogisticRegression, params, DEFAULT_LINEAR_PARAMS)
