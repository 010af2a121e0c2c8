"""The linear model's decision kernel, compiled ahead of time like the forest's (`aot_kernels`).

`CompactLinear.decision` with numpy gathers a float64 copy of the coefficients of every
non-zero of a chunk (non-zeros x classes), scales it and sums it per row: ~100 non-zeros x 100
classes a text product, through temporaries larger than the cache. The kernel adds each
non-zero's scaled coefficients straight into its row, first to last, then the intercept: the
order of scikit-learn's own `X @ coef.T + intercept` (scipy's CSR product), so it gives its bits
for the float32 coefficients; numpy's `reduceat` sums a row's terms pairwise, a few ulps away.

numpy only: Spark workers import this module.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bettercat_assets.core.aot_kernels import KernelSet, compiled_module


def decide_rows(indptr, indices, data, coef_t, intercept, out):  # pragma: no cover - numba
    """`out[r] = intercept + sum_j float64(coef_t[indices[j]]) * data[j]` over row r's
    non-zeros, summed first to last and the intercept added last (scipy's CSR product order).
    Returns -1, or the first row with a column outside `coef_t` (`out` then incomplete)."""
    n_features, n_decisions = coef_t.shape
    for r in range(indptr.shape[0] - 1):
        lo, hi = indptr[r], indptr[r + 1]
        for j in range(lo, hi):
            col = np.int64(indices[j])
            if col < 0 or col >= n_features:
                return r
            x = data[j]
            if j == lo:
                for k in range(n_decisions):
                    out[r, k] = np.float64(coef_t[col, k]) * x
            else:
                for k in range(n_decisions):
                    out[r, k] += np.float64(coef_t[col, k]) * x
        if lo == hi:
            for k in range(n_decisions):
                out[r, k] = intercept[k]
        else:
            for k in range(n_decisions):
                out[r, k] = intercept[k] + out[r, k]
    return -1


LINEAR_KERNELS = KernelSet(
    "bettercat_linear_kernel",
    (("decide_rows", decide_rows, "i8(i8[::1], i4[::1], f8[::1], f4[:,::1], f8[::1], f8[:,::1])"),),
)


def compiled_decide() -> Callable[..., int] | None:
    """`decide_rows` as `make install` compiled it, or None when it was not built (no numba)."""
    module = compiled_module(LINEAR_KERNELS)
    return None if module is None else getattr(module, "decide_rows", None)
