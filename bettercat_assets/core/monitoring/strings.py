"""Profiles of text and categorical features: what is counted per product, at training and in
the scoring pass alike.

* a categorical feature: the training's most common values, then "other", then missing
  (an empty cell is missing, as it is for the model);
* a text feature, two measures per product: its length in word tokens, and its vocabulary
  coverage, the share of its word tokens that the fitted featurizer's word vocabulary knows
  (a product without word tokens counts as missing there).

Word tokens are scikit-learn's default `(?u)\\b\\w\\w+\\b`, the tokens the featurizer's word
block was fitted on (`core/features/text_terms.py`; the monitoring layer does not import the
features layer, so the pattern is repeated here).

Runs in Spark's Python workers: numpy and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from typing import Any

import numpy as np

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")
#: A text column's fitted word vocabulary and whether it lower-cases, or None (no word block).
Vocabulary = Callable[[str], "tuple[Container[str], bool] | None"]


def cells(values: Any) -> list[str | None]:
    """Cells as text; None, NaN and the empty text are missing (None)."""
    out: list[str | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        else:
            text = v if isinstance(v, str) else str(v)
            out.append(text or None)
    return out


def category_codes(values: Any, index: dict[str, int]) -> np.ndarray:
    """Per cell: the position of its value among the top values, len(index) for any other
    value, len(index) + 1 when missing."""
    other, missing = len(index), len(index) + 1
    return np.fromiter(
        (missing if c is None else index.get(c, other) for c in cells(values)),
        dtype=np.int64,
        count=len(values),
    )


def category_counts(values: Any, index: dict[str, int]) -> np.ndarray:
    """Counts per top value, then other, then missing."""
    return np.bincount(category_codes(values, index), minlength=len(index) + 2)


def top_values(values: Any, limit: int) -> tuple[str, ...]:
    """The `limit` most common non-missing values (ties by value, so the order is stable)."""
    seen: dict[str, int] = {}
    for c in cells(values):
        if c is not None:
            seen[c] = seen.get(c, 0) + 1
    ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
    return tuple(value for value, _ in ranked[:limit])


def word_measures(
    values: Any, known: Container[str] | None, lowercase: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, coverage) per cell: NaN tokens for a missing cell; NaN coverage for a cell
    without tokens or when there is no vocabulary (`known` None)."""
    texts = cells(values)
    tokens = np.full(len(texts), np.nan)
    coverage = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if text is None:
            continue
        words = TOKEN_PATTERN.findall(text.lower() if lowercase else text)
        tokens[i] = len(words)
        if words and known is not None:
            coverage[i] = sum(w in known for w in words) / len(words)
    return tokens, coverage


def vocabulary_of(vocabulary: Vocabulary | None, column: str) -> tuple[Container[str] | None, bool]:
    """The column's word vocabulary and lower-casing, or (None, True) without one."""
    found = vocabulary(column) if vocabulary is not None else None
    return found if found is not None else (None, True)
