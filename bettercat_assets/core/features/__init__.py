"""Features: a client's text, categorical and numeric columns as the model's sparse input.

Offers:
- `featurizer`: Featurizer, SparseRows (pickle-free; runs in Spark workers, no scikit-learn)
- `text_terms`: word_analyzer, char_wb_analyzer (scikit-learn's analyzers, reproduced)
- `fit`: fit_features, FittedFeatures (training side, scikit-learn)
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "Featurizer": "featurizer",
        "SparseRows": "featurizer",
        "word_analyzer": "text_terms",
        "char_wb_analyzer": "text_terms",
        "fit_features": "fit",
        "FittedFeatures": "fit",
    },
)
