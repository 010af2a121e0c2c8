"""The compact forest's prediction kernel compiled ahead of time, so Spark workers skip numba.

numba's JIT costs a scoring worker ~120 MB of RSS (importing numba and llvmlite, then loading
even a cached kernel into LLVM), more than the model and its batches together. The same
kernel (`compact_forest._accumulate_python`), compiled once by `numba.pycc` into a plain
extension module, is imported in a fraction of a MB and predicts bit-identically.

`make install` builds it (`python -m bettercat_assets.core.model.build_forest_kernel`) beside the
interpreter, one export per supported combination of array dtypes. A process that finds none
(a numba or kernel change since, no C compiler) uses the numba JIT as before.
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
from pathlib import Path

import numpy as np

#: Where the compiled kernel lives: beside the interpreter whose numpy and numba built it.
KERNEL_DIR = Path(sys.prefix) / "share" / "bettercat"
_SIGNATURE = (
    "void(f4[:,::1], {feature}[::1], f4[::1], i4[:,::1], u1[::1], i4[::1], {indptr}[::1], "
    "{classes}[::1], f4[::1], f8[:,::1], i8, i8)"
)
_CODES = {
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


def module_name(kernel: Kernel) -> str | None:
    """The compiled module's name for this kernel source, numba and numpy (None: no numba)."""
    try:
        numba_version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        return None
    key = f"{inspect.getsource(kernel)}|{_SIGNATURE}|{numba_version}|{np.__version__}"
    return f"bettercat_forest_kernel_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def kernel_path(kernel: Kernel) -> Path | None:
    name = module_name(kernel)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return KERNEL_DIR / f"{name}{suffix}" if name else None


def export_name(feature: str, indptr: str, classes: str) -> str:
    return f"accumulate_{feature}_{indptr}_{classes}"


@functools.cache
def compiled_module(kernel: Kernel):
    """The compiled module, or None when it was not built for this kernel, numba and numpy."""
    path = kernel_path(kernel)
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
    """`kernel` compiled for these arrays' dtypes, or None (then the JIT kernel is used)."""
    module = compiled_module(kernel)
    if module is None:
        return None
    try:
        codes = [_CODES[arrays[name].dtype] for name in _VARIANTS]
    except KeyError:
        return None
    return getattr(module, export_name(*codes), None)


def build(kernel: Kernel) -> Path | None:
    """Compile every dtype combination of `kernel` with numba.pycc into `kernel_path(kernel)`."""
    import warnings

    path = kernel_path(kernel)
    if path is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

        cc = CC(module_name(kernel))
        cc.output_dir = str(KERNEL_DIR)
        cc.verbose = False
        for feature in _VARIANTS["feature"]:
            for indptr in _VARIANTS["leaf_indptr"]:
                for classes in _VARIANTS["leaf_classes"]:
                    signature = _SIGNATURE.format(feature=feature, indptr=indptr, classes=classes)
                    cc.export(export_name(feature, indptr, classes), signature)(kernel)
        KERNEL_DIR.mkdir(parents=True, exist_ok=True)
        cc.compile()
    return path if path.is_file() else None
