"""Fake but learnable product catalogues for the demo and the tests (`bettercat generate-data`).

Each client gets a training file (product_id, features..., category_id) and a prediction file
(product_id, features...) under its `DataLayout` directories, as gzip CSV. The data is fully
determined by (seed, client_id): a client's files do not depend on which other clients exist,
and the same seed always produces byte-identical files.

How the data is made:

* categories follow a Zipf-like long tail (`sample_data.zipf_exponent`), and every category
  appears at least 3 times in training when the row count allows it;
* every category has a latent prototype (one value per feature, grouped by department so that
  sibling categories look alike); each product's features are its category's prototype plus
  Gaussian noise scaled by `sample_data.noise`, then shaped by the feature's kind, guessed from
  its name (price, count, flag, code, measure or plain continuous);
* a share `sample_data.missing_share` of feature values is left empty; ids and labels never are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.data import generate_text

#: Share of products that go to the training file; the rest (at least one) are to be predicted.
TRAIN_SHARE = 0.8
#: Every category appears at least this many times in training when there are enough rows.
MIN_PER_CATEGORY = 3
#: Standard deviation of the per-product noise around the prototype, at `noise: 1.0`.
NOISE_SCALE = 1.0

_FLAG_PREFIXES = ("is_", "has_", "can_", "needs_", "contains_", "supports_")
_FLAG_SUFFIXES = ("_required", "_powered", "_included", "_free", "_proof", "_compatible")
_FLAG_WORDS = frozenset(
    {
        "waterproof",
        "wireless",
        "rechargeable",
        "organic",
        "vegan",
        "refurbished",
        "handmade",
        "recyclable",
        "foldable",
        "dishwasher_safe",
        "battery_powered",
        "assembly_required",
    }
)
_COUNT_PREFIXES = ("n_", "num_", "nb_", "count_")
_COUNT_SUFFIXES = ("_count", "_qty", "_quantity")
_COUNT_WORDS = frozenset({"pages", "pieces", "reviews", "stock", "quantity"})
_TEXT_WORDS = frozenset({"title", "name", "description", "text"})
_MEASURE_UNITS = frozenset(
    {"g", "kg", "mg", "cm", "mm", "m", "ml", "l", "in", "mah", "gb", "mb", "tb", "w", "kcal"}
)
_MEASURE_WORDS = frozenset(
    {"weight", "length", "width", "height", "depth", "volume", "size", "calories", "capacity"}
)

_DEPARTMENTS = (
    "apparel",
    "accessories",
    "basics",
    "care",
    "electronics",
    "essentials",
    "garden",
    "gifts",
    "home",
    "kids",
    "kitchen",
    "leisure",
    "office",
    "outdoor",
    "premium",
    "seasonal",
    "sports",
    "storage",
    "tools",
    "travel",
    "wellness",
)
_SUBCATEGORIES = (
    "adapters",
    "bags",
    "bottles",
    "boxes",
    "brushes",
    "cables",
    "candles",
    "caps",
    "cases",
    "chairs",
    "cleaners",
    "clips",
    "covers",
    "cups",
    "cushions",
    "filters",
    "frames",
    "gloves",
    "hooks",
    "jackets",
    "jars",
    "kits",
    "lamps",
    "lights",
    "mats",
    "mugs",
    "nets",
    "oils",
    "pads",
    "pans",
    "pens",
    "plates",
    "pouches",
    "racks",
    "refills",
    "ropes",
    "scarves",
    "sets",
    "shelves",
    "sleeves",
    "snacks",
    "socks",
    "sprays",
    "stands",
    "straps",
    "tapes",
    "tins",
    "towels",
    "trays",
    "tubes",
    "wraps",
)


@dataclass(frozen=True)
class GeneratedClient:
    """What `generate_client_data` wrote for one client."""

    client_id: str
    train_file: Path
    predict_file: Path
    train_rows: int
    predict_rows: int
    categories: int


def feature_kind(name: str) -> str:
    """Guess how a feature is distributed from its name.

    Returns one of "flag" (0/1), "code" (small int), "price" (log-normal, 2 decimals), "count"
    (non-negative int), "year" (int), "rating" (1.0 to 5.0), "measure" (positive, log-normal)
    or "continuous".
    """
    low = name.lower()
    tokens = set(re.split(r"[^a-z0-9]+", low))
    if (
        low.startswith(_FLAG_PREFIXES)
        or low.endswith(_FLAG_SUFFIXES)
        or low in _FLAG_WORDS
        or tokens & _FLAG_WORDS
    ):
        return "flag"
    if low == "code" or low.endswith("_code"):
        return "code"
    if tokens & {"price", "cost", "msrp"}:
        return "price"
    if (
        low.startswith(_COUNT_PREFIXES)
        or low.endswith(_COUNT_SUFFIXES)
        or tokens & _COUNT_WORDS
        or ("length" in tokens and tokens & _TEXT_WORDS)
    ):
        return "count"
    if tokens & {"year"}:
        return "year"
    if low in {"rating", "stars"} or low.endswith(("_rating", "_stars")):
        return "rating"
    if tokens & _MEASURE_UNITS or tokens & _MEASURE_WORDS:
        return "measure"
    return "continuous"


def client_rng(seed: int, client_id: str) -> np.random.Generator:
    """A generator that depends only on (seed, client_id), stable across runs and platforms."""
    digest = hashlib.sha256(f"{int(seed)}\x00{client_id}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest[:16], "little")))


def _category_ids(
    client_id: str, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Unique, realistic-looking ids: '<prefix>/<department>/<sub>-NNN', grouped by department."""
    prefix = re.split(r"[_-]", client_id)[0].lower() or client_id.lower()
    n_departments = max(1, min(len(_DEPARTMENTS), round(np.sqrt(k))))
    departments = rng.choice(_DEPARTMENTS, size=n_departments, replace=False)
    department_of = rng.integers(0, n_departments, size=k)
    subs = rng.choice(_SUBCATEGORIES, size=k)
    width = max(3, len(str(k)))
    names = [
        f"{prefix}/{departments[d]}/{s}-{i + 1:0{width}d}"
        for i, (d, s) in enumerate(zip(department_of, subs, strict=True))
    ]
    return np.array(names, dtype=object), department_of


def _train_label_counts(
    train_rows: int, k: int, exponent: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows per category in training: a floor for every category, the rest Zipf-distributed."""
    weights = 1.0 / np.arange(1, k + 1, dtype=float) ** exponent
    weights = weights[rng.permutation(k)]  # the head of the tail is not always category 1
    probs = weights / weights.sum()
    floor = min(MIN_PER_CATEGORY, train_rows // k)
    counts = np.full(k, floor, dtype=np.int64)
    counts += rng.multinomial(train_rows - floor * k, probs)
    return counts, probs


def _shape_feature(
    kind: str,
    latent: np.ndarray,
    labels: np.ndarray,
    k: int,
    noise: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, bool]:
    """Turn one column of latent values into the feature's kind; returns (values, is_integer)."""
    if kind == "flag":
        threshold = rng.normal(0.0, 0.5)
        return (latent > threshold).astype(np.int64), True
    if kind == "code":
        n_codes = int(rng.integers(4, 13))
        preferred = rng.integers(0, n_codes, size=k)
        keep = rng.random(latent.shape[0]) < np.exp(-0.5 * noise)
        return np.where(
            keep, preferred[labels], rng.integers(0, n_codes, size=latent.shape[0])
        ), True
    if kind == "price":
        base = rng.uniform(np.log(5.0), np.log(100.0))
        return np.maximum(np.round(np.exp(base + 0.8 * latent), 2), 0.01), False
    if kind == "count":
        base = rng.uniform(np.log(2.0), np.log(200.0))
        return rng.poisson(np.exp(base + 0.7 * latent)).astype(np.int64), True
    if kind == "year":
        return np.minimum(np.rint(rng.uniform(1995.0, 2015.0) + 6.0 * latent), 2025).astype(
            np.int64
        ), True
    if kind == "rating":
        return np.round(1.0 + 4.0 / (1.0 + np.exp(-latent)), 1), False
    if kind == "measure":
        base = rng.uniform(np.log(2.0), np.log(1000.0))
        return np.round(np.exp(base + 0.6 * latent), 2), False
    loc, scale = rng.uniform(0.0, 10.0), rng.uniform(0.5, 3.0)
    return np.round(loc + scale * latent, 3), False


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """Write a gzip CSV atomically and reproducibly (no timestamp or file name in the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
        ):
            frame.to_csv(text, index=False, lineterminator="\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data is read by other processes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate_client_data(
    client: ClientConfig,
    layout: DataLayout,
    seed: int = 42,
    *,
    products: int | None = None,
    categories: int | None = None,
) -> GeneratedClient:
    """Generate and write one client's training and prediction files.

    `products` and `categories` override `client.sample_data` (handy in tests).
    """
    n, k_wanted = _requested_size(client, products, categories)
    rng = client_rng(seed, client.client_id)
    predict_rows = max(1, round(n * (1.0 - TRAIN_SHARE)))
    train_rows = n - predict_rows
    k = min(k_wanted, train_rows)  # every category must appear in training at least once

    category_ids, department_of = _category_ids(client.client_id, k, rng)
    counts, probs = _train_label_counts(train_rows, k, client.sample_data.zipf_exponent, rng)
    train_labels = rng.permutation(np.repeat(np.arange(k), counts))
    predict_labels = rng.choice(k, size=predict_rows, p=probs)
    labels = np.concatenate([train_labels, predict_labels])
    columns = _feature_columns(client, labels, department_of, rng)
    product_ids = _product_ids(client.client_id, n, rng)
    columns |= generate_text.text_columns(
        client,
        labels,
        department_of,
        category_ids,
        lambda name: client_rng(seed, f"{client.client_id}\x00text\x00{name}"),
    )
    columns = {name: columns[name] for name in client.features}

    frame = pd.DataFrame({client.id_column: product_ids, **columns})
    frame[client.label_column] = category_ids[labels]
    train = frame.iloc[:train_rows].sort_values(client.id_column, kind="stable")
    predict = frame.iloc[train_rows:].drop(columns=client.label_column)
    predict = predict.sort_values(client.id_column, kind="stable")

    train_file = layout.train_file(client.client_id)
    predict_file = layout.predict_file(client.client_id)
    _write_csv_gz(train, train_file)
    _write_csv_gz(predict, predict_file)
    return GeneratedClient(
        client_id=client.client_id,
        train_file=train_file,
        predict_file=predict_file,
        train_rows=train_rows,
        predict_rows=predict_rows,
        categories=k,
    )


def _requested_size(
    client: ClientConfig, products: int | None, categories: int | None
) -> tuple[int, int]:
    sample = client.sample_data
    n = int(products if products is not None else sample.products)
    k_wanted = int(categories if categories is not None else sample.categories)
    if n < 2:
        raise BettercatError(f"client '{client.client_id}': need at least 2 products, got {n}")
    if k_wanted < 1:
        raise BettercatError(f"client '{client.client_id}': need at least 1 category")
    return n, k_wanted


def _feature_columns(
    client: ClientConfig, labels: np.ndarray, department_of: np.ndarray, rng: np.random.Generator
) -> dict[str, object]:
    """Feature columns around per-category prototypes: department centre plus a category
    offset, unit variance per feature, noise and missing values as `sample_data` says."""
    sample = client.sample_data
    features = client.features_of_kind("numeric")
    n, d, k = labels.size, len(features), department_of.size
    n_departments = int(department_of.max()) + 1
    centres = rng.normal(0.0, 1.0, size=(n_departments, d))
    prototypes = 0.75 * centres[department_of] + 0.66 * rng.normal(0.0, 1.0, size=(k, d))
    latent = prototypes[labels] + sample.noise * NOISE_SCALE * rng.standard_normal((n, d))
    missing = rng.random((n, d)) < sample.missing_share
    columns: dict[str, object] = {}
    for j, name in enumerate(features):
        values, is_int = _shape_feature(
            feature_kind(name), latent[:, j], labels, k, sample.noise, rng
        )
        if is_int:
            columns[name] = pd.arrays.IntegerArray(values.astype(np.int64), missing[:, j])
        else:
            columns[name] = np.where(missing[:, j], np.nan, values)
    return columns


def _product_ids(client_id: str, n: int, rng: np.random.Generator) -> np.ndarray:
    numbers = rng.permutation(n) + 1
    width = max(6, len(str(n)))
    return np.array([f"P-{client_id}-{i:0{width}d}" for i in numbers], dtype=object)


def generate_all(
    clients: Iterable[ClientConfig], layout: DataLayout, seed: int = 42
) -> list[GeneratedClient]:
    """Generate every client's files; each client's data depends only on (seed, client_id)."""
    return [generate_client_data(client, layout, seed) for client in clients]
