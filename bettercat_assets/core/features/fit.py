"""Fit a client's featurizer with scikit-learn, and export it to the pickle-free `Featurizer`.

`FittedFeatures` keeps the scikit-learn transformers (the reference the tests compare the
compact featurizer with) and `transform` gives their output as a scipy CSR matrix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from bettercat_assets.core.config.feature_specs import FeatureSpec, TextSettings
from bettercat_assets.core.features.featurizer import Featurizer, encode_terms, signed_log1p


def text_cells(values: pd.Series) -> list[str]:
    """Text as the featurizer reads it: missing cells are the empty text."""
    return values.fillna("").astype(str).tolist()


@dataclass
class FittedFeatures:
    """scikit-learn transformers fitted on one client's training features."""

    specs: tuple[FeatureSpec, ...]
    scale_numeric: bool
    imputer: SimpleImputer | None = None
    indicator: MissingIndicator | None = None
    scaler: StandardScaler | None = None
    #: (column, kind, transformer): OneHotEncoder or TfidfVectorizer, in output order
    blocks: list[tuple[str, str, Any]] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        return [s.name for s in self.specs if s.kind == kind]

    def _numeric(self, frame: pd.DataFrame) -> list[sp.csr_matrix]:
        names = self.names("numeric")
        if not names:
            return []
        raw = frame[names].to_numpy(dtype=np.float64)
        x = self.imputer.transform(raw)
        if self.scaler is not None:
            x = self.scaler.transform(signed_log1p(x))
        parts = [sp.csr_matrix(x)]
        if self.indicator is not None:
            parts.append(sp.csr_matrix(self.indicator.transform(raw).astype(np.float64)))
        return parts

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """The model's input for `frame` (scikit-learn's own computation)."""
        parts = self._numeric(frame)
        for column, kind, transformer in self.blocks:
            cells = text_cells(frame[column])
            if kind == "categorical":
                parts.append(transformer.transform(np.asarray(cells, dtype=object)[:, None]))
            else:
                parts.append(transformer.transform(cells))
        return sp.hstack(parts, format="csr", dtype=np.float64)

    def export(self) -> Featurizer:
        """The same transform in the pickle-free form the workers load."""
        n_num = len(self.names("numeric"))
        indicator = (
            self.indicator.features_.astype(np.int32)
            if self.indicator is not None
            else np.zeros(0, np.int32)
        )
        arrays: dict[str, np.ndarray] = {
            "numeric_fill": (self.imputer.statistics_ if n_num else np.zeros(0)).astype(float),
            "numeric_mean": self.scaler.mean_ if self.scaler is not None else np.zeros(n_num),
            "numeric_scale": self.scaler.scale_ if self.scaler is not None else np.ones(n_num),
            "numeric_indicator": indicator,
        }
        offset = n_num + indicator.size
        blocks = []
        for b, (column, kind, transformer) in enumerate(self.blocks):
            block: dict[str, Any] = {"column": column, "kind": kind, "offset": offset}
            if kind == "categorical":
                terms = [str(c) for c in transformer.categories_[0]]
            else:
                vocab = transformer.vocabulary_
                terms = sorted(vocab, key=vocab.__getitem__)
                arrays[f"b{b}_idf"] = transformer.idf_.astype(np.float64)
                block |= {
                    "analyzer": transformer.analyzer,
                    "ngram_range": list(transformer.ngram_range),
                    "lowercase": bool(transformer.lowercase),
                    "sublinear_tf": bool(transformer.sublinear_tf),
                }
            arrays[f"b{b}_terms"], arrays[f"b{b}_offsets"] = encode_terms(terms)
            blocks.append(block)
            offset += len(terms)
        spec = {
            "inputs": [{"name": s.name, "kind": s.kind} for s in self.specs],
            "scale_numeric": self.scale_numeric,
            "blocks": blocks,
            "n_features_out": offset,
        }
        return Featurizer(spec, arrays)


def _tfidf(analyzer: str, ngrams: tuple[int, int], text: TextSettings) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=analyzer,
        ngram_range=tuple(ngrams),
        min_df=text.min_df,
        max_features=text.max_features,
        sublinear_tf=text.sublinear_tf,
        lowercase=text.lowercase,
        dtype=np.float64,
    )


#: a categorical column where more than this share of the training products have a value no
#: other product has (a package or model name, an id) is also read as text
MOSTLY_UNIQUE_SHARE = 0.5


def mostly_unique(cells: list[str]) -> bool:
    """More than `MOSTLY_UNIQUE_SHARE` of the values occur once: one-hot columns of such
    values are each true for one training product and never again, while their words and
    character n-grams (`python3-numpy`, `libfoo-dev`) tell much."""
    counts = Counter(cells)
    once = sum(1 for n in counts.values() if n == 1)
    return bool(cells) and once > MOSTLY_UNIQUE_SHARE * len(cells)


def _text_blocks(column: str, cells: list[str], text: TextSettings) -> list[tuple[str, str, Any]]:
    """The word and char_wb TF-IDF blocks of a column (an analyzer whose vocabulary would be
    empty, no term in `min_df` products, makes none)."""
    blocks = []
    for analyzer, ngrams in (("word", text.word_ngrams), ("char_wb", text.char_ngrams)):
        if ngrams is None:
            continue
        try:
            vectorizer = _tfidf(analyzer, ngrams, text).fit(cells)
        except ValueError:  # empty vocabulary: nothing to learn from this column
            continue
        blocks.append((column, "text", vectorizer))
    return blocks


def fit_features(
    specs: tuple[FeatureSpec, ...], frame: pd.DataFrame, text: TextSettings, scale_numeric: bool
) -> FittedFeatures:
    """Fit every transformer on the training rows. A text column whose vocabulary ends up
    empty (no term in `min_df` products) contributes no columns; a mostly unique categorical
    column (`mostly_unique`) gets a text column's blocks besides its one-hot block."""
    fitted = FittedFeatures(specs=tuple(specs), scale_numeric=scale_numeric)
    numeric = fitted.names("numeric")
    if numeric:
        raw = frame[numeric].to_numpy(dtype=np.float64)
        fitted.imputer = SimpleImputer(strategy="median").fit(raw)
        if scale_numeric:
            fitted.scaler = StandardScaler().fit(signed_log1p(fitted.imputer.transform(raw)))
        if np.isnan(raw).any():
            fitted.indicator = MissingIndicator(features="missing-only").fit(raw)
    for spec in specs:
        cells = text_cells(frame[spec.name]) if spec.kind != "numeric" else []
        if spec.kind == "categorical":
            encoder = OneHotEncoder(handle_unknown="ignore", dtype=np.float64)
            fitted.blocks.append(
                (spec.name, "categorical", encoder.fit(np.asarray(cells, dtype=object)[:, None]))
            )
        if spec.kind == "text" or (spec.kind == "categorical" and mostly_unique(cells)):
            fitted.blocks.extend(_text_blocks(spec.name, cells, text))
    return fitted
