"""Compact-forest prediction from sparse rows (text features), the way scikit-learn routes them.

scikit-learn casts a sparse input to float32 CSR; a feature absent from a row is 0.0 and an
explicit zero is 0.0 too. The numba kernel walks a block of rows tree by tree (as the dense
kernel does) and finds a row's value for a node's feature by binary search in the row's sorted
column indices; without numba, small chunks of rows are made dense and go through the dense
numpy kernel. numpy only: Spark workers import this module.
"""

from __future__ import annotations

import functools

import numpy as np

from bettercat_assets.core.features.featurizer import SparseRows
from bettercat_assets.core.model.compact_forest import HAVE_NUMBA, CompactForest

#: rows per block: their CSR values stay in cache while each tree is walked for them
_BLOCK_ROWS = 512
_LANES = 16
#: dense cells per chunk in the numpy fallback
_DENSE_CELLS = 4_000_000


def _accumulate_sparse_python(  # noqa: C901 - one numba kernel, kept flat for speed
    indptr, indices, data, feature, threshold, children, roots, lindptr, classes, values, out
):  # pragma: no cover - compiled by numba
    """Add each tree's leaf distribution for every row into `out` (float64)."""
    n_rows = indptr.shape[0] - 1
    n_trees = roots.shape[0]
    refs = np.empty(_LANES, dtype=np.int64)
    for block_start in range(0, n_rows, _BLOCK_ROWS):
        block_stop = min(block_start + _BLOCK_ROWS, n_rows)
        for t in range(n_trees):
            root = roots[t]
            for start in range(block_start, block_stop, _LANES):
                m = min(_LANES, block_stop - start)
                for j in range(m):
                    refs[j] = root
                alive = m if root >= 0 else 0
                while alive > 0:
                    alive = 0
                    for j in range(m):
                        ref = refs[j]
                        if ref >= 0:
                            f = feature[ref]
                            lo = indptr[start + j]
                            hi = indptr[start + j + 1]
                            while lo < hi:  # first position whose column is >= f
                                mid = (lo + hi) >> 1
                                if indices[mid] < f:
                                    lo = mid + 1
                                else:
                                    hi = mid
                            x = np.float32(0.0)
                            if lo < indptr[start + j + 1] and indices[lo] == f:
                                x = data[lo]
                            refs[j] = children[ref, np.int64(x > threshold[ref])]
                            alive += 1
                for j in range(m):
                    leaf = -refs[j] - 1
                    for k in range(lindptr[leaf], lindptr[leaf + 1]):
                        out[start + j, classes[k]] += values[k]


@functools.cache
def _accumulate_sparse_numba():  # pragma: no cover - needs numba
    import numba

    return numba.njit(nogil=True)(_accumulate_sparse_python)


def sparse_predict_proba(
    forest: CompactForest, rows: SparseRows, *, backend: str | None = None
) -> np.ndarray:
    """`forest.predict_proba` for sparse rows; float64 (n_rows, n_classes)."""
    if rows.n_cols != forest.n_features_in_:
        raise ValueError(
            f"rows have {rows.n_cols} features, the forest expects {forest.n_features_in_}"
        )
    backend = backend or ("numba" if HAVE_NUMBA else "numpy")
    n_rows = rows.n_rows
    if backend == "numpy" or n_rows == 0:
        return _densified(forest, rows)
    a = forest._arrays  # the validated, read-only arrays
    out = np.zeros((n_rows, len(forest.classes_)), dtype=np.float64)
    _accumulate_sparse_numba()(
        rows.indptr.astype(np.int64),
        rows.indices.astype(np.int32),
        rows.data.astype(np.float32),  # scikit-learn's float32 cast
        a["feature"],
        a["threshold"],
        a["children"],
        a["roots"],
        a["leaf_indptr"],
        a["leaf_classes"],
        a["leaf_values"],
        out,
    )
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
