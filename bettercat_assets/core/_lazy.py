"""Lazy re-exports for the core's subpackages.

A subpackage's `__init__` names what it offers without importing it: a name is loaded on first
use. Importing `bettercat_assets.core.scoring.batch_scorer` in a Spark worker therefore never
pulls in the driver-side modules (MLflow, Spark SQL) through `scoring/__init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`, from {name: submodule}."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
