"""Profiles of text and categorical features: what is counted per product, at training and in
the scoring pass alike.

* a categorical feature: the training's most common values, then "other", then missing
  (an empty cell is missing, as it is for the model);
* a text feature, two measures per product: its length in word tokens, and its vocabulary
  coverage, the share of its word tokens that the fitted featurizer's word vocabulary knows
  (a product without word tokens counts as missing there).

Word tokens are scikit-learn's default `(?u)\\b\\w\\w+\\b`, the tokens the featurizer's word
block was fitted on (`core/features/text_terms.py`; the monitoring layer does not import the
features layer, so the pattern is repeated here). Cells are counted with pyarrow and numpy
(`core/monitoring/words.py` finds the same tokens on the cells' bytes); the few cells it
cannot lower-case as Python does, and columns that are not UTF-8, go through the pattern.

Runs in Spark's Python workers: numpy, pyarrow and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bettercat_assets.core.monitoring import words

TOKEN_PATTERN = re.compile(r"(?u)\b\w\w+\b")
#: A text column's fitted word vocabulary and whether it lower-cases, or None (no word block).
Vocabulary = Callable[[str], "tuple[Container[str], bool] | None"]
#: Cells measured at once (bounds the per-byte arrays of a large training column).
BLOCK_ROWS = 65_536


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
    array = words.text_array(values, cells)
    if array is None:
        found = (missing if c is None else index.get(c, other) for c in cells(values))
        return np.fromiter(found, dtype=np.int64, count=len(values))
    positions = np.append(np.fromiter(index.values(), dtype=np.int64, count=len(index)), other)
    found = pc.index_in(array, value_set=pa.array(list(index), type=pa.string()))
    codes = positions[pc.fill_null(found, other).to_numpy(zero_copy_only=False)]
    codes[array.is_null().to_numpy(zero_copy_only=False)] = missing
    return codes


def category_counts(values: Any, index: dict[str, int]) -> np.ndarray:
    """Counts per top value, then other, then missing."""
    return np.bincount(category_codes(values, index), minlength=len(index) + 2)


def _value_counts(values: Any) -> tuple[list[str], np.ndarray]:
    """(distinct non-missing values, their counts)."""
    array = words.text_array(values, cells)
    if array is None:
        seen: dict[str, int] = {}
        for c in cells(values):
            if c is not None:
                seen[c] = seen.get(c, 0) + 1
        return list(seen), np.fromiter(seen.values(), dtype=np.int64, count=len(seen))
    counted = pc.value_counts(array.drop_null())
    return counted.field("values").to_pylist(), counted.field("counts").to_numpy()


def top_values(values: Any, limit: int) -> tuple[str, ...]:
    """The `limit` most common non-missing values (ties by value, so the order is stable)."""
    found, counts = _value_counts(values)
    if limit <= 0 or not found:
        return ()
    if len(found) > limit:  # only values as common as the limit-th can be among them
        floor = np.partition(counts, len(found) - limit)[len(found) - limit]
        keep = np.flatnonzero(counts >= floor)
        found, counts = [found[i] for i in keep], counts[keep]
    ranked = sorted(zip(found, counts.tolist(), strict=True), key=lambda item: (-item[1], item[0]))
    return tuple(value for value, _ in ranked[:limit])


def python_word_measures(
    texts: list[str | None], known: Container[str] | None, lowercase: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """`word_measures` of text cells (None: missing), with the token pattern itself."""
    tokens = np.full(len(texts), np.nan)
    coverage = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if text is None:
            continue
        found = TOKEN_PATTERN.findall(text.lower() if lowercase else text)
        tokens[i] = len(found)
        if found and known is not None:
            coverage[i] = sum(w in known for w in found) / len(found)
    return tokens, coverage


def _block_measures(
    array: pa.StringArray, known: Container[str] | None, lowercase: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`word_measures` of a block of cells."""
    filled = pc.fill_null(array, "")
    runs, is_token, cell = words.word_runs(pc.utf8_lower(filled) if lowercase else filled)
    tokens = np.bincount(cell[is_token], minlength=len(array)).astype(np.float64)
    coverage = np.full(len(array), np.nan)
    if known is not None:
        hits = np.bincount(cell[words.known_tokens(runs, is_token, known)], minlength=len(array))
        some = tokens > 0
        coverage[some] = hits[some] / tokens[some]
    tokens[array.is_null().to_numpy(zero_copy_only=False)] = np.nan
    unsafe = words.unsafe_cells(filled) if lowercase else ()
    if len(unsafe):
        texts = array.take(pa.array(unsafe)).to_pylist()
        tokens[unsafe], coverage[unsafe] = python_word_measures(texts, known, lowercase)
    return tokens, coverage


def word_measures(
    values: Any, known: Container[str] | None, lowercase: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, coverage) per cell: NaN tokens for a missing cell; NaN coverage for a cell
    without tokens or when there is no vocabulary (`known` None)."""
    array = words.text_array(values, cells)
    if array is None:
        return python_word_measures(cells(values), known, lowercase)
    tokens = np.full(len(array), np.nan)
    coverage = np.full(len(array), np.nan)
    for start in range(0, len(array), BLOCK_ROWS):
        block = slice(start, start + BLOCK_ROWS)
        measured = _block_measures(array.slice(start, BLOCK_ROWS), known, lowercase)
        tokens[block], coverage[block] = measured
    return tokens, coverage


def vocabulary_of(vocabulary: Vocabulary | None, column: str) -> tuple[Container[str] | None, bool]:
    """The column's word vocabulary and lower-casing, or (None, True) without one."""
    found = vocabulary(column) if vocabulary is not None else None
    return found if found is not None else (None, True)
