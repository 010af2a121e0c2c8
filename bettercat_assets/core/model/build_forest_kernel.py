"""`python -m bettercat_assets.core.model.build_forest_kernel`: compile the compact forest's
prediction kernel ahead of time (`forest_kernel_aot`); `make install` runs it."""

from __future__ import annotations

from bettercat_assets.core.model.compact_forest import _accumulate_python
from bettercat_assets.core.model.forest_kernel_aot import build


def main() -> int:
    built = build(_accumulate_python)
    print(built or "no compiled kernel (numba is not installed)")
    return 0 if built else 1


if __name__ == "__main__":
    raise SystemExit(main())
