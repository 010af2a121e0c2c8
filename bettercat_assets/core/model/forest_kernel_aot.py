"""The forest's prediction kernels compiled ahead of time, so Spark workers skip numba.

numba's JIT costs a scoring worker ~120 MB of RSS (importing numba and llvmlite, then loading
even a cached kernel into LLVM), more than the model and its batches together. The same
kernels (plain Python functions: `compact_forest._accumulate_python` for dense rows,
`sparse_kernels` for text features' sparse rows), compiled once by `numba.pycc` into plain
extension modules, are imported in a fraction of a MB and predict bit-identically.

`make install` builds them (`python -m bettercat_assets.core.model.build_forest_kernel`) beside
the interpreter, one export per supported combination of array dtypes. A process that finds
none (a numba or kernel change since, no C compiler) uses the numba JIT as before.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Where the compiled kernels live: beside the interpreter whose numpy and numba built them.
KERNEL_DIR = Path(sys.prefix) / "share" / "bettercat"
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


@dataclass(frozen=True)
class KernelSet:
    """Functions compiled together into one extension module: (export name, function,
    numba signature) per export; the module's name hashes their sources and signatures."""

    prefix: str
    exports: tuple[tuple[str, Kernel, str], ...]

    def module_name(self) -> str | None:
        """The compiled module's name for these sources, numba and numpy (None: no numba)."""
        try:
            numba_version = importlib.metadata.version("numba")
        except importlib.metadata.PackageNotFoundError:
            return None
        sources = {inspect.getsource(fn) for _, fn, _ in self.exports}
        signatures = [f"{name}:{sig}" for name, _, sig in self.exports]
        key = f"{sorted(sources)}|{signatures}|{numba_version}|{np.__version__}"
        return f"{self.prefix}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def path(self) -> Path | None:
        name = self.module_name()
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        return KERNEL_DIR / f"{name}{suffix}" if name else None


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


@functools.cache
def compiled_module(kernels: KernelSet):
    """The compiled module, or None when it was not built for these sources, numba and numpy."""
    path = kernels.path()
    if path is None or not path.is_file():
        return None
    loader = importlib.machinery.ExtensionFileLoader(path.name.split(".")[0], str(path))
    spec = importlib.util.spec_from_file_location(loader.name, str(path), loader=loader)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(module)
    except ImportError:
        return None
    return module


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


def build(kernels: KernelSet) -> Path | None:
    """Compile every export of `kernels` with numba.pycc into `kernels.path()`."""
    import warnings

    path = kernels.path()
    if path is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

        cc = CC(kernels.module_name())
        cc.output_dir = str(KERNEL_DIR)
        cc.verbose = False
        for name, kernel, signature in kernels.exports:
            cc.export(name, signature)(kernel)
        KERNEL_DIR.mkdir(parents=True, exist_ok=True)
        cc.compile()
    return path if path.is_file() else None
