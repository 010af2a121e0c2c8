"""The compact forest's array format: allowed dtypes and the validation of loaded arrays.

Numpy only: Spark workers import it (through `compact_forest`) to check every model they load.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# name -> allowed dtypes (the first one is used when values fit)
ARRAY_DTYPES: dict[str, tuple[np.dtype, ...]] = {
    "feature": (np.dtype(np.int16), np.dtype(np.int32)),
    "threshold": (np.dtype(np.float32),),
    "children": (np.dtype(np.int32),),
    "missing_go_to_left": (np.dtype(np.uint8),),
    "roots": (np.dtype(np.int32),),
    "leaf_indptr": (np.dtype(np.int32), np.dtype(np.int64)),
    "leaf_classes": (np.dtype(np.uint16), np.dtype(np.int32)),
    "leaf_values": (np.dtype(np.float32),),
}


def smallest_dtype(name: str, max_value: int) -> np.dtype:
    for dtype in ARRAY_DTYPES[name]:
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"{name}: value {max_value} does not fit any supported dtype")


def round_down_to_float32(threshold: np.ndarray) -> np.ndarray:
    """Largest float32 ``t32 <= threshold`` (elementwise): ``x32 <= t32 <=> x32 <= threshold``."""
    threshold = np.asarray(threshold, dtype=np.float64)
    t32 = threshold.astype(np.float32)
    too_big = t32.astype(np.float64) > threshold
    t32[too_big] = np.nextafter(t32[too_big], np.float32(-np.inf))
    return t32


def _bad(msg: str) -> ValueError:
    return ValueError(f"invalid compact forest: {msg}")


def validate_arrays(
    arrays: dict[str, np.ndarray], classes: np.ndarray, n_features_in: int, feature_names: Any
) -> None:
    """Raise ValueError unless the arrays form a well-formed forest that is safe to walk."""
    _check_dtypes(arrays)
    _check_header(classes, n_features_in, feature_names)
    _check_sizes(arrays)
    _check_values(arrays, len(classes), n_features_in)
    _check_structure(arrays)


def _check_dtypes(arrays: dict[str, np.ndarray]) -> None:
    if set(arrays) != set(ARRAY_DTYPES):
        raise _bad(f"arrays {sorted(arrays)} != expected {sorted(ARRAY_DTYPES)}")
    for name, allowed in ARRAY_DTYPES.items():
        arr = arrays[name]
        ndim = 2 if name == "children" else 1
        if (
            not isinstance(arr, np.ndarray)
            or arr.dtype not in allowed
            or arr.ndim != ndim
            or (ndim == 2 and arr.shape[1] != 2)
        ):
            shape = "(n, 2)" if ndim == 2 else "1-D"
            raise _bad(f"{name} must be a {shape} array of dtype {' or '.join(map(str, allowed))}")


def _check_header(classes: np.ndarray, n_features_in: int, feature_names: np.ndarray) -> None:
    n_classes = len(classes)
    if classes.ndim != 1 or n_classes < 1:
        raise _bad("classes must be a non-empty 1-D array")
    if len(set(classes.tolist())) != n_classes:
        raise _bad("classes are not unique")
    if n_features_in < 1:
        raise _bad("n_features_in_ must be >= 1")
    if feature_names.size and feature_names.shape != (n_features_in,):
        raise _bad("feature_names do not match n_features_in_")


def _check_sizes(a: dict[str, np.ndarray]) -> None:
    n_internal = a["feature"].size
    for name in ("threshold", "children", "missing_go_to_left"):
        if a[name].shape[0] != n_internal:
            raise _bad(f"{name} has {a[name].shape[0]} rows, feature has {n_internal}")
    n_trees = a["roots"].size
    if n_trees < 1:
        raise _bad("no trees")
    indptr = a["leaf_indptr"]
    nnz = a["leaf_classes"].size
    if indptr.size - 1 < n_trees:
        raise _bad("fewer leaves than trees")
    if a["leaf_values"].size != nnz:
        raise _bad("leaf_values and leaf_classes differ in length")
    if indptr.size < 2 or indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 1):
        raise _bad("leaf_indptr is not an increasing index into leaf_classes")


def _check_values(a: dict[str, np.ndarray], n_classes: int, n_features_in: int) -> None:
    n_internal = a["feature"].size
    if n_internal and (a["feature"].min() < 0 or a["feature"].max() >= n_features_in):
        raise _bad("feature index out of range")
    # +inf is legitimate: sklearn's "all non-missing left, missing right" split
    if np.any(np.isnan(a["threshold"])):
        raise _bad("NaN threshold")
    if n_internal and a["missing_go_to_left"].max() > 1:
        raise _bad("missing_go_to_left must be 0 or 1")
    if a["leaf_classes"].size and int(a["leaf_classes"].max()) >= n_classes:
        raise _bad("leaf class index out of range")
    values = a["leaf_values"]
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values > 1):
        raise _bad("leaf values must be in (0, 1]")
    indptr = a["leaf_indptr"]
    sums = np.add.reduceat(values.astype(np.float64), indptr[:-1].astype(np.intp))
    if np.any(np.abs(sums - 1.0) > 1e-4):
        raise _bad("a leaf's class distribution does not sum to 1")


def _check_structure(a: dict[str, np.ndarray]) -> None:
    """Every reference in range, internal children after their parent (so every walk
    terminates), and every node and leaf referenced exactly once."""
    n_internal = a["feature"].size
    n_leaves = a["leaf_indptr"].size - 1
    refs = np.concatenate([a["roots"], a["children"].ravel()]).astype(np.int64)
    if refs.size and (refs.min() < -n_leaves or refs.max() >= n_internal):
        raise _bad("child or root reference out of range")
    parent = np.arange(n_internal)
    for side in (0, 1):
        child = a["children"][:, side].astype(np.int64)
        if np.any((child >= 0) & (child <= parent)):
            raise _bad("a child does not come after its parent")
    internal_refs = refs[refs >= 0]
    leaf_refs = -refs[refs < 0] - 1
    if not (
        np.all(np.bincount(internal_refs, minlength=n_internal) == 1)
        and np.all(np.bincount(leaf_refs, minlength=n_leaves) == 1)
    ):
        raise _bad("nodes and leaves must each be referenced exactly once")
