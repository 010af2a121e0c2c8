"""Kernels compiled ahead of time by `numba.pycc`, so Spark workers never import numba.

numba's JIT costs a worker ~120 MB of RSS (importing numba and llvmlite, then loading even a
cached kernel into LLVM). Plain Python functions compiled once into an extension module beside
the interpreter are imported in a fraction of a MB. Used by the forest (`model.forest_kernel_aot`,
`model.sparse_kernels`), the linear model (`model.linear_kernels`) and the featurizer
(`features.text_kernels`); `make install` builds them all
(`python -m bettercat_assets.core.model.build_forest_kernel`).

numpy and the standard library only: Spark workers import this module.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Where the compiled kernels live: beside the interpreter whose numpy and numba built them.
KERNEL_DIR = Path(sys.prefix) / "share" / "bettercat"

Kernel = Callable[..., object]


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


def build(kernels: KernelSet) -> Path | None:
    """Compile every export of `kernels` with numba.pycc into `kernels.path()`; earlier builds
    of the same kernels (other sources, numba or numpy) are removed once it exists."""
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
    if not path.is_file():
        return None
    for stale in KERNEL_DIR.glob(f"{kernels.prefix}_*"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path
