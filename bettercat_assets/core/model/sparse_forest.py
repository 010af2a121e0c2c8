"""Compact-forest prediction from sparse rows (text features), the way scikit-learn routes them.

scikit-learn casts a sparse input to float32 CSR; a feature absent from a row is 0.0 and an
explicit zero is 0.0 too. The kernels (`sparse_kernels`: compiled ahead of time by `make
install`, else numba's JIT) give each row of a block a bit per feature the forest uses and
walk the block's rows tree by tree over the forest's packed nodes; without numba, small chunks
of rows are made dense and go through the dense numpy kernel. numpy only: Spark workers import
this module.
"""

from __future__ import annotations

import numpy as np

from bettercat_assets.core.features.featurizer import SparseRows
from bettercat_assets.core.model import sparse_kernels
from bettercat_assets.core.model.compact_forest import HAVE_NUMBA, CompactForest
from bettercat_assets.core.model.forest_kernel_aot import CODES

#: dense cells per chunk in the numpy fallback
_DENSE_CELLS = 4_000_000
BACKENDS = ("compiled", "numba", "numpy")


def sparse_predict_proba(
    forest: CompactForest, rows: SparseRows, *, backend: str | None = None
) -> np.ndarray:
    """`forest.predict_proba` for sparse rows; float64 (n_rows, n_classes).

    ``backend``: "compiled" (ahead of time, falling back to the JIT when not built), "numba"
    (the JIT) or "numpy"; default compiled when numba is installed, else numpy."""
    if rows.n_cols != forest.n_features_in_:
        raise ValueError(
            f"rows have {rows.n_cols} features, the forest expects {forest.n_features_in_}"
        )
    if backend not in (None, *BACKENDS):
        raise ValueError(f"unknown backend {backend!r}")
    backend = backend or ("compiled" if HAVE_NUMBA else "numpy")
    n_rows = rows.n_rows
    if backend == "numpy" or n_rows == 0:
        return _densified(forest, rows)
    a = forest._arrays  # the validated, read-only arrays
    bits_of, walk = sparse_kernels.kernels(
        CODES[a["leaf_indptr"].dtype], CODES[a["leaf_classes"].dtype], backend == "compiled"
    )
    nodes, used, slot_of, class_mask = forest.packed_nodes()
    indptr = rows.indptr.astype(np.int64)
    indices = rows.indices.astype(np.int32)
    data = rows.data.astype(np.float32)  # scikit-learn's float32 cast
    words = max(1, (used.size + 63) // 64)
    block = sparse_kernels.block_rows(words)
    bits = np.zeros(block * words * 2, dtype=np.uint64)
    values = np.empty(data.size, dtype=np.float32)
    out = np.zeros((n_rows, len(forest.classes_)), dtype=np.float64)
    tree = (nodes, nodes.view(np.float32), a["roots"], a["leaf_indptr"], a["leaf_classes"])
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        row = (start, stop, words, bits, values)
        bits_of(indptr, indices, data, slot_of, *row)
        walk(*tree, a["leaf_values"], *row, class_mask, out)
        bits_of(indptr, indices, data, slot_of, *row)  # the bits cleared again
    out /= forest.n_trees
    return out


def _densified(forest: CompactForest, rows: SparseRows) -> np.ndarray:
    """Chunks of rows made dense (float32) for the dense numpy kernel."""
    n_rows = rows.n_rows
    out = np.zeros((n_rows, len(forest.classes_)), dtype=np.float64)
    step = max(1, _DENSE_CELLS // max(rows.n_cols, 1))
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        lo, hi = rows.indptr[start], rows.indptr[stop]
        chunk = SparseRows(
            rows.indptr[start : stop + 1] - lo, rows.indices[lo:hi], rows.data[lo:hi], rows.n_cols
        )
        out[start:stop] = forest.predict_proba(chunk.toarray(np.float32), backend="numpy")
    return out
