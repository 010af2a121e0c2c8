"""A forest's internal nodes packed for the sparse kernel (`sparse_kernels.walk_block`).

One int32 record per node: the split feature's number among the features the forest uses,
its sign bit (`CHAIN`) set when the left child is the next node and the threshold >= 0; the
threshold's float32 bits; left; right. A child that is a pure leaf (one class, probability 1:
every leaf of a forest grown to `min_samples_leaf=1`) is referred to as
`PURE + (leaf << bits | class)`, so a row that reaches it adds 1 to its class without reading
the leaf arrays; other leaves stay `-(leaf + 1)`. numpy only: Spark workers import this.
"""

from __future__ import annotations

import numpy as np

from bettercat_assets.core.model.sparse_kernels import CHAIN, PURE, PURE_LIMIT

#: (nodes (n, 4) int32, used (int32: the columns split on, sorted), slot_of (int32 by column,
#: -1: unused), class_mask (2**bits - 1; 0: no pure-leaf references))
PackedNodes = tuple[np.ndarray, np.ndarray, np.ndarray, int]


def pure_leaf_refs(
    children: np.ndarray,
    leaf_indptr: np.ndarray,
    leaf_classes: np.ndarray,
    leaf_values: np.ndarray,
    n_classes: int,
) -> tuple[np.ndarray, int]:
    """`children` with each reference to a pure leaf (one class, value exactly 1.0: every leaf
    of a forest grown to `min_samples_leaf=1`) replaced by `PURE + (leaf << bits | class)`,
    and `bits` (class numbers' width); other references unchanged. None replaced (bits 0)
    when the codes would not stay below `PURE_LIMIT`."""
    bits = max(1, int(n_classes - 1).bit_length())
    n_leaves = leaf_indptr.size - 1
    if n_leaves == 0 or (n_leaves << bits) > PURE_LIMIT - PURE:
        return children, 0
    first = leaf_indptr[:-1].astype(np.int64)
    single = np.diff(leaf_indptr) == 1
    pure = np.zeros(n_leaves, dtype=bool)
    pure[single] = leaf_values[first[single]] == 1.0
    leaf = -children.astype(np.int64) - 1
    is_pure = children < 0
    is_pure[is_pure] = pure[leaf[is_pure]]
    coded = np.where(
        is_pure, PURE + (leaf << bits | leaf_classes[first[leaf.clip(0, n_leaves - 1)]]), children
    )
    return coded.astype(np.int32), bits


def pack_nodes(arrays: dict[str, np.ndarray], n_classes: int, n_features: int) -> PackedNodes:
    """The packed form of a validated forest's `arrays` (`forest_format`)."""
    used, slots = np.unique(arrays["feature"], return_inverse=True)
    nodes = np.empty((arrays["feature"].size, 4), dtype=np.int32)
    nodes[:, 0] = slots.reshape(-1)
    children = arrays["children"]
    chain = (children[:, 0] == np.arange(1, nodes.shape[0] + 1)) & (arrays["threshold"] >= 0)
    nodes[chain, 0] |= CHAIN
    nodes[:, 1] = arrays["threshold"].view(np.int32)
    nodes[:, 2:], class_bits = pure_leaf_refs(
        children, arrays["leaf_indptr"], arrays["leaf_classes"], arrays["leaf_values"], n_classes
    )
    slot_of = np.full(n_features, -1, dtype=np.int32)
    slot_of[used] = np.arange(used.size, dtype=np.int32)
    parts = (nodes, used.astype(np.int32), slot_of)
    for arr in parts:
        arr.setflags(write=False)
    return (*parts, (1 << class_bits) - 1)


def unpack_nodes(packed: PackedNodes, feature_dtype: np.dtype) -> dict[str, np.ndarray]:
    """`feature`, `threshold` and `children` as they were before packing."""
    nodes, used, _, class_mask = packed
    children = np.array(nodes[:, 2:])
    pure = children < PURE_LIMIT
    bits = int(class_mask).bit_length()
    children[pure] = -((children[pure].astype(np.int64) - PURE) >> bits) - 1
    return {
        "feature": used[nodes[:, 0] & ~CHAIN].astype(feature_dtype),
        "threshold": np.ascontiguousarray(nodes.view(np.float32)[:, 1]),
        "children": children,
    }
