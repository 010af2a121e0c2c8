"""Turn a fitted scikit-learn ``RandomForestClassifier`` into a `CompactForest`.

Training-side only (imports scikit-learn); the workers load the result with `CompactForest.load`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.model.compact_forest import CompactForest
from bettercat_assets.core.model.forest_format import round_down_to_float32, smallest_dtype


def compact_from_sklearn(forest: Any) -> CompactForest:
    """The compact form of `forest`, equal to its ``predict_proba`` within 1e-6."""
    _check_forest(forest)
    n_classes = len(forest.classes_)
    n_features = int(forest.n_features_in_)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("feature", "threshold", "children", "mgl", "values")
    }
    roots: list[int] = []
    n_internal = n_leaves = 0
    for est in forest.estimators_:
        _check_tree(est, n_classes)
        root, internal, leaves = _append_tree(est.tree_, parts, n_internal, n_leaves)
        roots.append(root)
        n_internal += internal
        n_leaves += leaves
    arrays = _assemble(parts, roots, n_features, n_classes, n_leaves)
    feature_names = getattr(forest, "feature_names_in_", None)
    return CompactForest(arrays, forest.classes_, n_features, feature_names)


def _check_forest(forest: Any) -> None:
    if not isinstance(forest, RandomForestClassifier):
        raise TypeError(f"expected a RandomForestClassifier, got {type(forest).__name__}")
    if not hasattr(forest, "estimators_"):
        raise ValueError("the forest is not fitted")
    if getattr(forest, "n_outputs_", 1) != 1:
        raise ValueError("multi-output forests are not supported")


def _check_tree(est: Any, n_classes: int) -> None:
    tree = est.tree_
    if tree.n_outputs != 1 or int(tree.n_classes[0]) != n_classes:
        raise ValueError("a tree's classes differ from the forest's classes_")
    if not np.array_equal(np.asarray(est.classes_), np.arange(n_classes)):
        raise ValueError("a tree's classes_ are not the forest's encoded classes")


def _append_tree(
    tree: Any, parts: dict[str, list[np.ndarray]], n_internal: int, n_leaves: int
) -> tuple[int, int, int]:
    """Append one tree's internal nodes and leaves; return its root reference and sizes."""
    children_left = tree.children_left
    children_right = tree.children_right
    is_leaf = children_left == -1
    internal = np.flatnonzero(~is_leaf)
    leaves = np.flatnonzero(is_leaf)
    # node id -> reference in the concatenated arrays
    ref = np.empty(tree.node_count, dtype=np.int64)
    ref[internal] = n_internal + np.arange(internal.size)
    ref[leaves] = -(n_leaves + np.arange(leaves.size)) - 1
    parts["feature"].append(tree.feature[internal])
    parts["threshold"].append(round_down_to_float32(tree.threshold[internal]))
    parts["children"].append(
        np.stack([ref[children_left[internal]], ref[children_right[internal]]], axis=1)
    )
    parts["mgl"].append(np.asarray(tree.missing_go_to_left, dtype=np.uint8)[internal])
    # sklearn >= 1.4 stores the normalised distribution; normalise anyway (no-op then)
    value = tree.value[leaves, 0, :]
    parts["values"].append(value / value.sum(axis=1, keepdims=True))
    return int(ref[0]), int(internal.size), int(leaves.size)


def _assemble(
    parts: dict[str, list[np.ndarray]],
    roots: list[int],
    n_features: int,
    n_classes: int,
    n_leaves: int,
) -> dict[str, np.ndarray]:
    value = np.concatenate(parts["values"]).astype(np.float32)
    nonzero = value != 0
    leaf_leaf, leaf_class = np.nonzero(nonzero)
    indptr = np.zeros(n_leaves + 1, dtype=np.int64)
    np.cumsum(nonzero.sum(axis=1), out=indptr[1:])
    return {
        "feature": np.concatenate(parts["feature"]).astype(
            smallest_dtype("feature", max(n_features - 1, 0))
        ),
        "threshold": np.concatenate(parts["threshold"]).astype(np.float32),
        "children": np.concatenate(parts["children"]).astype(np.int32).reshape(-1, 2),
        "missing_go_to_left": np.concatenate(parts["mgl"]).astype(np.uint8),
        "roots": np.asarray(roots, dtype=np.int32),
        "leaf_indptr": indptr.astype(smallest_dtype("leaf_indptr", int(indptr[-1]))),
        "leaf_classes": leaf_class.astype(smallest_dtype("leaf_classes", n_classes - 1)),
        "leaf_values": value[leaf_leaf, leaf_class],
    }
