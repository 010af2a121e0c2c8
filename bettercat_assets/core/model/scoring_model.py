"""A client's compact model as scoring uses it: an optional featurizer and a compact estimator.

The compact folder of a registered version holds `compact_forest.{npz,json}` (RandomForest) or
`compact_linear.{npz,json}` (`model: {kind: linear}`), and `featurizer.{npz,json}` when the
client has text or categorical features or a linear model. Without a featurizer the forest
reads the numeric columns directly (missing values go where the trees learned), as before.
Every part is checksummed and loaded with `allow_pickle=False`. numpy only: Spark workers
import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bettercat_assets.core.features import featurizer as featurizer_files
from bettercat_assets.core.features.featurizer import Featurizer
from bettercat_assets.core.model import compact_forest as forest_files
from bettercat_assets.core.model import compact_linear as linear_files
from bettercat_assets.core.model.compact_forest import CompactForest
from bettercat_assets.core.model.compact_linear import CompactLinear
from bettercat_assets.core.model.sparse_forest import sparse_predict_proba

#: a vocabulary term as a str key and an int value in a dict (measured: ~130 bytes)
VOCABULARY_ENTRY_BYTES = 130
#: rows featurised and scored at once: bounds a worker's memory per Arrow batch (a batch of
#: 20,000 titles made ~300 MB of term ids and sort buffers at once); as many as the workers'
#: scoring chunk, so that a text forest's sparse kernel walks each tree for all of them
CHUNK_ROWS = 4096
RANDOM_FOREST = "random_forest"
LINEAR = "linear"
#: part -> (arrays file, description file) inside a compact folder
PART_FILES = {
    RANDOM_FOREST: (forest_files.ARRAYS_FILE, forest_files.META_FILE),
    LINEAR: (linear_files.ARRAYS_FILE, linear_files.META_FILE),
    "featurizer": (featurizer_files.ARRAYS_FILE, featurizer_files.META_FILE),
}


class ScoringModel:
    """Top-k scoring's view of a model: input columns in, class probabilities out."""

    def __init__(
        self,
        estimator: CompactForest | CompactLinear,
        featurizer: Featurizer | None,
        feature_names: list[str] | None = None,
    ) -> None:
        if featurizer is None and not isinstance(estimator, CompactForest):
            raise ValueError("invalid compact model: a linear model needs its featurizer")
        if featurizer is not None and featurizer.n_features_out != estimator.n_features_in_:
            raise ValueError(
                f"invalid compact model: the featurizer makes {featurizer.n_features_out} "
                f"features, the model expects {estimator.n_features_in_}"
            )
        self.estimator = estimator
        self.featurizer = featurizer
        self.classes_ = estimator.classes_
        if featurizer is not None:
            self.feature_names = featurizer.input_names
            self.feature_kinds = {i["name"]: i["kind"] for i in featurizer.inputs}
        else:
            names = feature_names or [str(f) for f in estimator.feature_names]
            self.feature_names = list(names)
            self.feature_kinds = {name: "numeric" for name in self.feature_names}

    @property
    def kind(self) -> str:
        return LINEAR if isinstance(self.estimator, CompactLinear) else RANDOM_FOREST

    def names_of_kind(self, kind: str) -> list[str]:
        return [n for n in self.feature_names if self.feature_kinds[n] == kind]

    @property
    def nbytes(self) -> int:
        """Bytes held: the arrays, plus the featurizer's vocabularies as Python dictionaries
        once scoring has built them (about `VOCABULARY_ENTRY_BYTES` per term)."""
        if self.featurizer is None:
            return int(self.estimator.nbytes)
        arrays = sum(a.nbytes for a in self.featurizer.arrays.values())
        terms = self.featurizer.n_features_out
        return int(self.estimator.nbytes + arrays + VOCABULARY_ENTRY_BYTES * terms)

    def predict_proba(
        self, columns: Mapping[str, Any], *, backend: str | None = None
    ) -> np.ndarray:
        """Class probabilities for the products whose feature columns are given by name."""
        if self.featurizer is None:
            X = np.column_stack(
                [np.asarray(columns[n], dtype=np.float32) for n in self.feature_names]
            )
            return self.estimator.predict_proba(X, backend=backend)
        n_rows = len(columns[self.feature_names[0]])
        if n_rows <= CHUNK_ROWS:
            return self._sparse_proba(columns, backend)
        out = np.empty((n_rows, len(self.classes_)), dtype=np.float64)
        for start in range(0, n_rows, CHUNK_ROWS):
            chunk = {n: columns[n][start : start + CHUNK_ROWS] for n in self.feature_names}
            out[start : start + CHUNK_ROWS] = self._sparse_proba(chunk, backend)
        return out

    def _sparse_proba(self, columns: Mapping[str, Any], backend: str | None) -> np.ndarray:
        rows = self.featurizer.transform(columns)
        if isinstance(self.estimator, CompactLinear):
            return self.estimator.predict_proba(rows)
        return sparse_predict_proba(self.estimator, rows, backend=backend)

    def save(self, directory: Path) -> None:
        self.estimator.save(directory)
        if self.featurizer is not None:
            self.featurizer.save(directory)

    @classmethod
    def load(cls, directory: Path, checked: set[tuple[str, ...]] | None = None) -> ScoringModel:
        """Load a compact folder (any of its layouts); ValueError if damaged or tampered with.
        `checked`: see `CompactForest.load_files`."""
        directory = Path(directory)
        present = {
            part: tuple(directory / name for name in names)
            for part, names in PART_FILES.items()
            if (directory / names[1]).exists()
        }
        return cls.load_parts(present, checked)

    @classmethod
    def load_parts(
        cls, parts: Mapping[str, tuple[Path, Path]], checked: set[tuple[str, ...]] | None = None
    ) -> ScoringModel:
        """Load from part -> (arrays path, description path), e.g. files Spark shipped."""
        if RANDOM_FOREST in parts:
            estimator: Any = CompactForest.load_files(*parts[RANDOM_FOREST], checked=checked)
        elif LINEAR in parts:
            estimator = CompactLinear.load_files(*parts[LINEAR])
        else:
            raise ValueError("no compact model (compact_forest or compact_linear) found")
        featurizer = Featurizer.load_files(*parts["featurizer"]) if "featurizer" in parts else None
        return cls(estimator, featurizer)

    def parts(self) -> list[str]:
        """The parts `save` writes."""
        return [self.kind, *(["featurizer"] if self.featurizer is not None else [])]
