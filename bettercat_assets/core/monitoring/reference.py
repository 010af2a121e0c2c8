"""A model version's reference profile: what its inputs and predictions looked like at training.

Made once at training (`build_reference`) and stored beside the compact model as
`reference_profile.json` (plain JSON with the SHA-256 of its own body: loaded pickle-free, a
damaged or edited file is refused). Every scoring counts its products on the same bins
(`core/monitoring/statistic.py`) and compares (`core/monitoring/drift.py`).

Per feature, by kind (`counts` always ends with the count of missing values):

* `numeric`: interior quantile edges of the training table, then counts per bin
  (`len(edges) + 1` bins, a value equal to an edge goes to the upper bin);
* `categorical`: the training's most common `values`, counts per value then "other";
* `text_length` and `text_vocabulary`, two per text feature (`core/monitoring/strings.py`):
  quantile bins of the word tokens per product, on every training row, and of the share of
  them in the fitted word vocabulary, on the test split (unseen by the featurizer, as scored
  products are).

Predictions, on the test split (never seen by the model): counts of each top-1 category,
counts of the top-1 score on its own quantile edges, the top-5 mass (sum of the five best
scores) against top-5 accuracy, and the actual top-5 hit rate per bin of top-5 mass with the
test split's category shares, from which scoring estimates top-5 accuracy without labels
(`core/monitoring/estimate.py`). A profile made before the text and categorical kinds and the
per-bin rates loads too: its numbers are compared and its estimate is the mean mass plus gap."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bettercat_assets.core.monitoring import estimate, strings

PROFILE_FILE = "reference_profile.json"
FORMAT = "bettercat-reference-profile-1"
TOP_K = 5
FEATURE_KINDS = ("numeric", "categorical", "text_length", "text_vocabulary")
#: kinds binned on quantile edges (counts: len(edges) + 1 bins, then missing)
BINNED_KINDS = ("numeric", "text_length", "text_vocabulary")


@dataclass(frozen=True)
class FeatureReference:
    """One feature's reference distribution (see the module docstring for `counts`)."""

    name: str
    kind: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    #: a categorical feature's most common training values, in `counts` order
    values: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(sum(self.counts))

    @property
    def label(self) -> str:
        """How checks name it: the feature, with the measure for a text feature."""
        return f"{self.name}.{self.kind[5:]}" if self.kind.startswith("text_") else self.name


@dataclass(frozen=True)
class PredictionReference:
    """The model's behaviour on its test split."""

    rows: int
    classes: tuple[str, ...]
    top1_counts: tuple[int, ...]
    score_edges: tuple[float, ...]
    score_counts: tuple[int, ...]
    #: mean and variance over products of the top-5 mass (sum of the five best scores)
    mass_mean: float
    mass_var: float
    #: actual top-5 accuracy on the test split
    top5_accuracy: float
    #: interior quantile edges of the top-5 mass, its test-split counts per bin and the
    #: actual top-5 hit rate per bin (shrunk towards mass plus gap where a bin is small)
    mass_edges: tuple[float, ...] = ()
    mass_counts: tuple[int, ...] = ()
    mass_rates: tuple[float, ...] = ()
    #: the test split's share of each class (in `classes` order)
    label_shares: tuple[float, ...] = ()

    @property
    def gap(self) -> float:
        """Actual top-5 accuracy minus mean top-5 mass: the model's calibration on top-5."""
        return self.top5_accuracy - self.mass_mean


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything a scoring is compared with, for one model version."""

    features: tuple[FeatureReference, ...]
    predictions: PredictionReference
    bins: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def save(self, directory: Path) -> Path:
        """Write `reference_profile.json` into `directory` (created if needed)."""
        directory.mkdir(parents=True, exist_ok=True)
        body = _canonical(_body(self))
        document = {"body": json.loads(body), "body_sha256": _sha256(body)}
        path = directory / PROFILE_FILE
        path.write_text(json.dumps(document) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        """Read and verify a saved profile; ValueError naming the file if it is not one."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            body = document["body"]
            if _sha256(_canonical(body)) != document["body_sha256"]:
                raise ValueError("does not match its checksum")
            if body.get("format") != FORMAT:
                raise ValueError(f"unknown format {body.get('format')!r}")
            return _from_body(body)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a valid reference profile: {exc}") from None


def _canonical(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _body(profile: ReferenceProfile) -> dict:
    return {
        "format": FORMAT,
        "bins": profile.bins,
        "features": [asdict(f) for f in profile.features],
        "predictions": asdict(profile.predictions),
    }


def _feature(f: dict) -> FeatureReference:
    feature = FeatureReference(
        name=str(f["name"]),
        kind=str(f["kind"]),
        edges=tuple(float(e) for e in f["edges"]),
        counts=tuple(int(c) for c in f["counts"]),
        values=tuple(str(v) for v in f.get("values", ())),
    )
    if feature.kind not in FEATURE_KINDS:
        raise ValueError(f"feature '{feature.name}' has unknown kind {feature.kind!r}")
    width = len(feature.edges) + 2 if feature.kind in BINNED_KINDS else len(feature.values) + 2
    if len(feature.counts) != width:
        raise ValueError(f"feature '{feature.label}': counts do not match its bins")
    if np.any(np.diff(feature.edges) <= 0):
        raise ValueError(f"feature '{feature.label}': edges are not increasing")
    return feature


def _predictions(p: dict) -> PredictionReference:
    predictions = PredictionReference(
        rows=int(p["rows"]),
        classes=tuple(str(c) for c in p["classes"]),
        top1_counts=tuple(int(c) for c in p["top1_counts"]),
        score_edges=tuple(float(e) for e in p["score_edges"]),
        score_counts=tuple(int(c) for c in p["score_counts"]),
        mass_mean=float(p["mass_mean"]),
        mass_var=float(p["mass_var"]),
        top5_accuracy=float(p["top5_accuracy"]),
        mass_edges=tuple(float(e) for e in p.get("mass_edges", ())),
        mass_counts=tuple(int(c) for c in p.get("mass_counts", ())),
        mass_rates=tuple(float(r) for r in p.get("mass_rates", ())),
        label_shares=tuple(float(s) for s in p.get("label_shares", ())),
    )
    if len(predictions.top1_counts) != len(predictions.classes):
        raise ValueError("top-1 counts do not match the classes")
    if len(predictions.score_counts) != len(predictions.score_edges) + 1:
        raise ValueError("score counts do not match the score edges")
    bins = len(predictions.mass_edges) + 1 if predictions.mass_rates else 0
    if len(predictions.mass_rates) != bins or len(predictions.mass_counts) != bins:
        raise ValueError("top-5 hit rates do not match the mass bins")
    if predictions.label_shares and len(predictions.label_shares) != len(predictions.classes):
        raise ValueError("category shares do not match the classes")
    return predictions


def _from_body(body: dict) -> ReferenceProfile:
    features = tuple(_feature(f) for f in body["features"])
    return ReferenceProfile(features, _predictions(body["predictions"]), int(body["bins"]))


def as_scored(values: np.ndarray) -> np.ndarray:
    """Values as the scorer sees them (float32, as the forest does), held in float64.

    Reference and scoring bin the same numbers: 3.3 in float32 is below 3.3 in float64, so
    an edge at 3.3 would otherwise put every scored 3.3 in the bin below its reference bin.
    """
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges that split the finite `values` into `bins` equal-mass bins (ties merged),
    each a float32 value."""
    values = as_scored(values)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([], dtype=np.float64)
    inner = np.quantile(finite.astype(np.float64), np.arange(1, bins) / bins, method="linear")
    # A value equal to an edge counts in the upper bin: the lowest edge at the minimum would
    # leave the first bin empty, so it goes.
    edges = np.unique(as_scored(inner))
    return edges[edges > finite.min()] if edges.size else edges


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin of `edges` (upper bin on ties), then the count of missing values."""
    values = as_scored(values)
    missing = ~np.isfinite(values)
    codes = np.searchsorted(edges, values, side="right")
    codes[missing] = edges.size + 1
    return np.bincount(codes, minlength=edges.size + 2)


def top_k_mass(proba: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per row, the sum of the `k` largest probabilities (all of them when there are fewer)."""
    if proba.shape[1] <= k:
        return proba.sum(axis=1)
    return np.partition(proba, proba.shape[1] - k, axis=1)[:, -k:].sum(axis=1)


def numeric_reference(name: str, values: np.ndarray, bins: int) -> FeatureReference:
    """A numeric feature's bins from its training values."""
    edges = quantile_edges(np.asarray(values, dtype=np.float64), bins)
    counts = bin_counts(values, edges)
    return FeatureReference(name, "numeric", tuple(edges.tolist()), tuple(counts.tolist()))


def categorical_reference(name: str, values: Any, bins: int) -> FeatureReference:
    """A categorical feature's `bins` most common training values, other and missing."""
    top = strings.top_values(values, bins)
    counts = strings.category_counts(values, {v: i for i, v in enumerate(top)})
    return FeatureReference(name, "categorical", (), tuple(counts.tolist()), top)


def text_references(
    name: str, train: Any, test: Any, vocabulary: strings.Vocabulary | None, bins: int
) -> list[FeatureReference]:
    """A text feature's token-count bins (every training row) and, when the featurizer has a
    word vocabulary, its coverage bins (the test split, which the featurizer did not see)."""
    known, lowercase = strings.vocabulary_of(vocabulary, name)
    tokens, _ = strings.word_measures(train, None, lowercase)
    out = [_binned(name, "text_length", tokens, bins)]
    if known is not None:
        _, coverage = strings.word_measures(test, known, lowercase)
        out.append(_binned(name, "text_vocabulary", coverage, bins))
    return out


def _binned(name: str, kind: str, values: np.ndarray, bins: int) -> FeatureReference:
    edges = quantile_edges(values, bins)
    return FeatureReference(
        name, kind, tuple(edges.tolist()), tuple(bin_counts(values, edges).tolist())
    )


def top5_hits(proba: np.ndarray, classes: np.ndarray, labels: Any) -> tuple[np.ndarray, ...]:
    """(top-5 mass, whether the label is among the five best) per row."""
    k = min(TOP_K, proba.shape[1])
    best = np.argpartition(proba, proba.shape[1] - k, axis=1)[:, -k:]
    hit = (classes[best] == np.asarray(labels, dtype=str)[:, None]).any(axis=1)
    return top_k_mass(proba), hit


def prediction_reference(
    proba: np.ndarray, classes: Sequence[str], y_test: np.ndarray, bins: int
) -> PredictionReference:
    """The test split's top-1 categories and scores, and its top-5 hit rate per mass bin."""
    classes = np.asarray([str(c) for c in classes])
    y_test = np.asarray(y_test, dtype=str)
    score = proba.max(axis=1)
    score_edges = quantile_edges(score, bins)
    mass, hit = top5_hits(proba, classes, y_test)
    mass_edges = quantile_edges(mass, bins)
    mass_counts, mass_rates = estimate.calibrate(mass, hit, mass_edges)
    shares = np.array([np.mean(y_test == c) for c in classes]) if y_test.size else ()
    return PredictionReference(
        rows=int(proba.shape[0]),
        classes=tuple(classes.tolist()),
        top1_counts=tuple(np.bincount(proba.argmax(axis=1), minlength=classes.size).tolist()),
        score_edges=tuple(score_edges.tolist()),
        score_counts=tuple(bin_counts(score, score_edges)[:-1].tolist()),
        mass_mean=float(mass.mean()),
        mass_var=float(mass.var()),
        top5_accuracy=float(hit.mean()),
        mass_edges=tuple(mass_edges.tolist()),
        mass_counts=tuple(mass_counts.tolist()),
        mass_rates=tuple(float(r) for r in mass_rates),
        label_shares=tuple(float(s) for s in shares),
    )


@dataclass(frozen=True)
class StringColumns:
    """A model's text and categorical features for its profile: kinds, training and test
    cells, and the fitted word vocabulary per text column."""

    kinds: dict[str, str]
    train: dict[str, Any]
    test: dict[str, Any]
    vocabulary: strings.Vocabulary | None = None

    def references(self, bins: int) -> list[FeatureReference]:
        out: list[FeatureReference] = []
        for name, kind in self.kinds.items():
            if kind == "categorical":
                out.append(categorical_reference(name, self.train[name], bins))
            elif kind == "text":
                out += text_references(
                    name, self.train[name], self.test[name], self.vocabulary, bins
                )
        return out


def build_reference(
    features: dict[str, np.ndarray],
    proba_test: np.ndarray,
    classes: Sequence[str],
    y_test: np.ndarray,
    bins: int,
    string_columns: StringColumns | None = None,
) -> ReferenceProfile:
    """The profile of a freshly trained model: `features` are the training table's numeric
    columns (every row), in the model's order, `proba_test` the model's probabilities on the
    test split; `string_columns` its text and categorical features, in the model's order."""
    numeric = [numeric_reference(n, v, bins) for n, v in features.items()]
    others = string_columns.references(bins) if string_columns else []
    return ReferenceProfile(
        features=tuple(numeric + others),
        predictions=prediction_reference(proba_test, classes, y_test, bins),
        bins=int(bins),
    )


def reference_from_table(
    table: Any,
    proba_test: np.ndarray,
    classes: Sequence[str],
    y_test: Any,
    bins: int,
    string_columns: StringColumns | None = None,
) -> ReferenceProfile:
    """`build_reference` from a training table's numeric columns (a DataFrame of every
    training row) and the model's `string_columns`."""
    numeric = table.select_dtypes("number")
    return build_reference(
        {str(name): numeric[name].to_numpy(dtype=np.float64) for name in numeric.columns},
        proba_test,
        [str(c) for c in classes],
        np.asarray(y_test),
        bins,
        string_columns,
    )


def reference_for_model(
    model: Any, table: Any, x_test: Any, y_test: Any, bins: int, classes: Any = None
) -> ReferenceProfile:
    """The profile of a trained compact model (`ScoringModel`) as scoring sees it: `table`
    every training row's features, `x_test` and `y_test` the test split. `classes`: those of
    the registered model when it is another (a refit: a superset), whose columns get the
    profiled model's probabilities."""
    featurizer = model.featurizer
    columns = {name: x_test[name].to_numpy() for name in model.feature_names}
    string_columns = StringColumns(
        kinds=dict(model.feature_kinds),
        train={n: table[n].to_numpy() for n in model.feature_names},
        test=columns,
        vocabulary=featurizer.word_vocabulary if featurizer is not None else None,
    )
    proba, classes = model.predict_proba(columns), model.classes_ if classes is None else classes
    if list(classes) != list(model.classes_):
        at = {str(c): i for i, c in enumerate(classes)}
        placed = np.zeros((proba.shape[0], len(classes)))
        placed[:, [at[str(c)] for c in model.classes_]] = proba
        proba = placed
    numeric = table[model.names_of_kind("numeric")]
    return reference_from_table(numeric, proba, classes, y_test, bins, string_columns)
