"""The forest's prediction kernels compiled ahead of time, so Spark workers skip numba.

numba's JIT costs a scoring worker ~120 MB of RSS (importing numba and llvmlite, then loading
even a cached kernel into LLVM), more than the model and its batches together. The same
kernels (plain Python functions: `compact_forest._accumulate_python` for dense rows,
`sparse_kernels` for text features' sparse rows), compiled once by `numba.pycc` into plain
extension modules, are imported in a fraction of a MB and predict bit-identically.

`make install` builds them (`python -m bettercat_assets.core.model.build_forest_kernel`) beside
the interpreter, one export per supported combination of array dtypes. A process that finds
none (a numba or kernel change since, no C compiler) uses the numba JIT as before. The
machinery shared with the featurizer's kernels (`KernelSet`, `compiled_module`, `build`) is
`core.aot_kernels`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np

from bettercat_assets.core.aot_kernels import KERNEL_DIR, KernelSet, build, compiled_module

__all__ = ["KERNEL_DIR", "CODES", "KernelSet", "build", "compiled_kernel", "compiled_module"]

_SIGNATURE = (
    "void(f4[:,::1], {feature}[::1], f4[::1], i4[:,::1], u1[::1], i4[::1], {indptr}[::1], "
    "{classes}[::1], f4[::1], f8[:,::1], i8, i8)"
)
CODES = {
    np.dtype(np.int16): "i2",
    np.dtype(np.int32): "i4",
    np.dtype(np.int64): "i8",
    np.dtype(np.uint16): "u2",
}
#: dtypes per variable array (see forest_format.ARRAY_DTYPES)
_VARIANTS = {
    "feature": ("i2", "i4"),
    "leaf_indptr": ("i4", "i8"),
    "leaf_classes": ("u2", "i4"),
}


Kernel = Callable[..., None]


def export_name(feature: str, indptr: str, classes: str) -> str:
    return f"accumulate_{feature}_{indptr}_{classes}"


@functools.cache
def dense_kernels(kernel: Kernel) -> KernelSet:
    """The dense forest kernel, one export per dtype combination of the forest's arrays."""
    exports = []
    for feature in _VARIANTS["feature"]:
        for indptr in _VARIANTS["leaf_indptr"]:
            for classes in _VARIANTS["leaf_classes"]:
                signature = _SIGNATURE.format(feature=feature, indptr=indptr, classes=classes)
                exports.append((export_name(feature, indptr, classes), kernel, signature))
    return KernelSet("bettercat_forest_kernel", tuple(exports))


def compiled_kernel(kernel: Kernel, arrays: Mapping[str, np.ndarray]) -> Kernel | None:
    """The dense `kernel` compiled for these arrays' dtypes, or None (then the JIT is used)."""
    module = compiled_module(dense_kernels(kernel))
    if module is None:
        return None
    try:
        codes = [CODES[arrays[name].dtype] for name in _VARIANTS]
    except KeyError:
        return None
    return getattr(module, export_name(*codes), None)
