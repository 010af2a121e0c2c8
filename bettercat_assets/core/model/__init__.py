"""The model: the compact (pickle-free) forest, top-k, the registered pyfunc and the MLflow model store.

`compact_forest` and `topk` run in Spark workers: they import numpy only.

Offers:
- `compact_forest`: CompactForest
- `compact_linear`: CompactLinear; `scoring_model`: ScoringModel; `sparse_forest`: sparse_predict_proba
- `topk`: top_k_indices, top_k_frame
- `pyfunc`: TopKCategoriesModel, serving_signature
- `store`: log_forest, log_compact, load_compact, fetch_compact, download_compact,
  download_serving_model, load_sklearn
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "CompactForest": "compact_forest",
        "CompactLinear": "compact_linear",
        "ScoringModel": "scoring_model",
        "sparse_predict_proba": "sparse_forest",
        "top_k_indices": "topk",
        "top_k_frame": "topk",
        "TopKCategoriesModel": "pyfunc",
        "serving_signature": "pyfunc",
        "log_forest": "store",
        "log_compact": "store",
        "download_serving_model": "store",
        "load_compact": "store",
        "fetch_compact": "store",
        "download_compact": "store",
        "load_sklearn": "store",
    },
)
