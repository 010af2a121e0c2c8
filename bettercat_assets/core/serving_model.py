"""Kept for models registered before the core was split into subpackages.

Their models-from-code entry file imports `bettercat_assets.core.serving_model`; new models use
`bettercat_assets.core.model.pyfunc_entry`.
"""

from bettercat_assets.core.model.pyfunc import TopKCategoriesModel

__all__ = ["TopKCategoriesModel"]
