"""`python -m bettercat_assets.core.model.build_forest_kernel`: compile the compact forest's
prediction kernels, dense and sparse, the linear model's (`linear_kernels`) and the featurizer's
(`features.text_kernels`) ahead of time (`core.aot_kernels`); `make install` runs it."""

from __future__ import annotations

from bettercat_assets.core.features.text_kernels import TEXT_KERNELS
from bettercat_assets.core.model.compact_forest import _accumulate_python
from bettercat_assets.core.model.forest_kernel_aot import build, dense_kernels
from bettercat_assets.core.model.linear_kernels import LINEAR_KERNELS
from bettercat_assets.core.model.sparse_kernels import SPARSE_KERNELS


def main() -> int:
    built = [
        build(dense_kernels(_accumulate_python)),
        build(SPARSE_KERNELS),
        build(LINEAR_KERNELS),
        build(TEXT_KERNELS),
    ]
    for path in built:
        print(path or "no compiled kernel (numba is not installed)")
    return 0 if all(built) else 1


if __name__ == "__main__":
    raise SystemExit(main())
