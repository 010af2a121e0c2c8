"""What runs in Spark's Python workers: top-k categories from compact models Spark shipped.

This module is imported by the workers, so it imports only numpy, pandas, pyarrow and the
compact model (featurizer, forest or linear model): no MLflow and no scikit-learn. The driver resolves each client's `@champion`,
downloads its compact form and ships the two files with `SparkSession.addArtifacts` (classic
Spark and Spark Connect alike); a worker loads a model with `np.load(allow_pickle=False)`
after checking its checksum, once per process.

Many clients share one Spark pass: rows carry their `client_id`, their numeric features sit
in the generic double columns `f0..fN` and their text and categorical features in the generic
string columns `s0..sM`, each in the client's own feature order. Only the model's features
travel; a client with text ships its featurizer beside its model.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from bettercat_assets.core.model.scoring_model import ScoringModel
from bettercat_assets.core.model.topk import top_k_indices
from bettercat_assets.core.scoring.pass_stats import PassStatistic, ScoredSlice, TaskStats

CLIENT_COLUMN = "client_id"
ID_COLUMN = "product_id"
#: Models a worker keeps loaded at once; a run of many small clients cycles through them.
MODELS_PER_WORKER = 32
#: Rows scored at once: a chunk's class probabilities (rows x classes float64) and top-k
#: temporaries are what a worker holds above its model; 4,096 rows x 100 classes = 3.3 MB.
SCORING_CHUNK_ROWS = 4096


def feature_column(position: int) -> str:
    """Name of the shared-pass column holding a client's numeric feature number `position`."""
    return f"f{position}"


def string_column(position: int) -> str:
    """Name of the shared-pass column holding a client's text/categorical feature `position`."""
    return f"s{position}"


@dataclass(frozen=True)
class ShippedModel:
    """A client's compact model as Spark ships it: two file names under `SparkFiles`."""

    client_id: str
    version: int
    arrays_file: str
    meta_file: str
    feature_names: tuple[str, ...]
    n_classes: int
    #: rows per product: min(the client's k, its number of categories)
    top_k: int
    #: "random_forest" or "linear": which compact estimator the two files hold
    kind: str = "random_forest"
    #: the featurizer's (arrays, description) files, or None (numeric features read directly)
    featurizer_files: tuple[str, str] | None = None
    #: the features read as strings (text and categorical), in feature order
    string_features: tuple[str, ...] = ()

    @property
    def numeric_features(self) -> tuple[str, ...]:
        return tuple(f for f in self.feature_names if f not in self.string_features)


def top_k_batch(
    product_ids: pd.Series,
    proba: np.ndarray,
    labels: pa.Array,
    k: int,
    model_version: int,
    best: np.ndarray | None = None,
) -> pd.DataFrame:
    """Same rows as `topk.top_k_frame`, with the string columns built by Arrow `take`.

    Repeating the ids and looking up the labels as Python objects costs more than the model
    on large batches; Arrow-backed columns go to Spark without a per-row conversion. `best`:
    `top_k_indices(proba, k)` when the caller has it already.
    """
    best = top_k_indices(proba, k) if best is None else best
    n_rows, kk = best.shape
    ids = pa.array(product_ids, type=pa.string(), from_pandas=True)
    return pd.DataFrame(
        {
            "product_id": pd.arrays.ArrowExtensionArray(ids.take(np.repeat(np.arange(n_rows), kk))),
            "pred_label": pd.arrays.ArrowExtensionArray(labels.take(best.ravel())),
            # Arrow-backed: a NaN score stays a NaN (the checks' score_bounds fails on it),
            # where a numpy column would reach Spark as a null, refused by the schema.
            "pred_score": pd.arrays.ArrowExtensionArray(
                pa.array(np.take_along_axis(proba, best, axis=1).ravel().astype(np.float32))
            ),
            "rank": np.tile(np.arange(kk, dtype=np.int32), n_rows),
            "model_version": np.full(n_rows * kk, model_version, dtype=np.int32),
        }
    )


def _shipped_path(name: str) -> Path:
    from pyspark import SparkFiles  # the worker's own view of the shipped files

    return Path(SparkFiles.get(name))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where there is none (macOS, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the OS.

    A worker's garbage (the model file's load and checks, each batch's temporaries) is freed
    but stays in glibc's heap, counted in the worker's RSS, until trimmed: about 30 MB after a
    20 MB model's load alone.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=MODELS_PER_WORKER)
def load_shipped(
    arrays_file: str,
    meta_file: str,
    kind: str = "random_forest",
    featurizer_files: tuple[str, str] | None = None,
) -> tuple[ScoringModel, pa.Array]:
    """Load a shipped model (every part's checksum verified) and its labels."""
    parts = {kind: (_shipped_path(arrays_file), _shipped_path(meta_file))}
    if featurizer_files is not None:
        parts["featurizer"] = tuple(_shipped_path(name) for name in featurizer_files)
    model = ScoringModel.load_parts(parts)
    release_freed_memory()
    return model, pa.array(model.classes_.tolist(), type=pa.string())


def client_columns(rows: pd.DataFrame, model: ShippedModel) -> dict[str, np.ndarray]:
    """A client's features by name from the shared pass's generic columns."""
    numeric = {
        name: rows[feature_column(i)].to_numpy(dtype=np.float64, na_value=np.nan)
        for i, name in enumerate(model.numeric_features)
    }
    strings = {
        name: rows[string_column(i)].to_numpy(dtype=object)
        for i, name in enumerate(model.string_features)
    }
    return numeric | strings


def score_client_rows(rows: pd.DataFrame, model: ShippedModel) -> Iterator[ScoredSlice]:
    """Top-k rows for one client's products (a slice of a shared-pass batch), in chunks of
    `SCORING_CHUNK_ROWS` so that a worker holds a chunk's class probabilities, not a batch's."""
    scorer, labels = load_shipped(
        model.arrays_file, model.meta_file, model.kind, model.featurizer_files
    )
    numeric = [feature_column(i) for i in range(len(model.numeric_features))]
    vocabulary = scorer.featurizer.word_vocabulary if scorer.featurizer is not None else None
    for start in range(0, len(rows), SCORING_CHUNK_ROWS):
        chunk = rows.iloc[start : start + SCORING_CHUNK_ROWS]
        # the numeric features as float32 (the statistics' view; text stays in its columns)
        X = np.ascontiguousarray(chunk[numeric].to_numpy(dtype=np.float32, na_value=np.nan))
        columns = client_columns(chunk, model)
        proba = scorer.predict_proba(columns)
        ids = chunk[ID_COLUMN]
        best = top_k_indices(proba, model.top_k)
        out = top_k_batch(ids, proba, labels, model.top_k, model.version, best)
        strings = {name: columns[name] for name in model.string_features}
        yield ScoredSlice(
            model.client_id, ids, X, proba, out, model.top_k, strings, vocabulary, best
        )


def _client_slices(batch: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """The batch's rows per client (most batches hold one client: no grouping then)."""
    clients = batch[CLIENT_COLUMN]
    first = clients.iat[0]
    if (clients.to_numpy() == first).all():
        yield str(first), batch
        return
    for client_id, rows in batch.groupby(CLIENT_COLUMN, sort=False):
        yield str(client_id), rows


#: Rewrites a client's scored rows before they are summarised and written (tests use it to
#: make a wrong output); None in production.
OutputTransform = Callable[[str, pd.DataFrame], pd.DataFrame]


def score_batches(
    batches: Iterator[pd.DataFrame],
    models: Mapping[str, ShippedModel],
    statistics: Sequence[PassStatistic] = (),
    stats_dir: str | None = None,
    transform: OutputTransform | None = None,
) -> Iterator[pd.DataFrame]:
    """`mapInPandas` body: each client's rows are scored by that client's own model; each
    slice is folded into `statistics`, written to `stats_dir` once the task's input is done."""
    task_stats = TaskStats(statistics)
    for batch in batches:
        if batch.empty:
            continue
        for client_id, rows in _client_slices(batch):
            for scored in score_client_rows(rows, models[client_id]):
                if transform is not None:
                    scored = dataclasses.replace(scored, output=transform(client_id, scored.output))
                task_stats.observe(scored)
                out = scored.output
                out[CLIENT_COLUMN] = client_id
                yield out
        release_freed_memory()
    if stats_dir is not None:
        task_stats.write(stats_dir)
