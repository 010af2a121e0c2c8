"""Tests for the sample-data generator (`bettercat_assets.core.data.generate`)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from bettercat_assets.core.config.clients import ClientConfig, load_clients
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.data.generate import (
    GeneratedClient,
    feature_kind,
    generate_all,
    generate_client_data,
)

IDS = {"product_id": str, "category_id": str}

CLIENTS_YAML = """
clients:
  - client_id: shop_a
    features: [price, weight_g, n_reviews, is_new, color_code, rating, brand_score]
    sample_data: {products: 3000, categories: 40, zipf_exponent: 1.0, missing_share: 0.05}
  - client_id: shop-b
    features: [price, waterproof, volume_l]
    sample_data: {products: 500, categories: 10, zipf_exponent: 1.2, missing_share: 0.02}
"""


@pytest.fixture
def clients(tmp_path: Path) -> dict[str, ClientConfig]:
    path = tmp_path / "clients.yaml"
    path.write_text(CLIENTS_YAML, encoding="utf-8")
    return load_clients(path).clients


@pytest.fixture
def shop_a(clients: dict[str, ClientConfig]) -> ClientConfig:
    return clients["shop_a"]


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data")


@pytest.fixture
def generated(shop_a: ClientConfig, layout: DataLayout) -> GeneratedClient:
    return generate_client_data(shop_a, layout, seed=42)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=IDS)


def _bytes(result: GeneratedClient) -> tuple[bytes, bytes]:
    return result.train_file.read_bytes(), result.predict_file.read_bytes()


def test_same_seed_gives_identical_bytes_and_other_seed_differs(shop_a, tmp_path):
    first = generate_client_data(shop_a, DataLayout(tmp_path / "one"), seed=7)
    second = generate_client_data(shop_a, DataLayout(tmp_path / "two"), seed=7)
    other = generate_client_data(shop_a, DataLayout(tmp_path / "three"), seed=8)
    assert _bytes(first) == _bytes(second)
    assert _bytes(first)[0] != _bytes(other)[0]
    assert _bytes(first)[1] != _bytes(other)[1]


def test_client_data_does_not_depend_on_other_clients(clients, tmp_path):
    together = generate_all(clients.values(), DataLayout(tmp_path / "all"), seed=3)
    alone = generate_all([clients["shop-b"]], DataLayout(tmp_path / "alone"), seed=3)
    assert [g.client_id for g in together] == ["shop_a", "shop-b"]
    assert _bytes(together[1]) == _bytes(alone[0])


def test_clients_with_the_same_settings_get_different_data(shop_a, layout):
    twin = shop_a.model_copy(update={"client_id": "shop_twin"})
    one = _read(generate_client_data(shop_a, layout, seed=3).train_file)
    two = _read(generate_client_data(twin, layout, seed=3).train_file)
    assert not one["price"].equals(two["price"])


def test_gzip_header_has_no_timestamp_or_file_name(generated):
    for path in (generated.train_file, generated.predict_file):
        header = path.read_bytes()[:10]
        assert header[:2] == b"\x1f\x8b"
        assert header[4:8] == b"\x00\x00\x00\x00"  # mtime 0
        assert header[3] & 0x08 == 0  # no FNAME field (a temp name would break determinism)


def test_files_are_written_at_the_layout_paths_without_leftovers(generated, layout):
    assert generated.train_file == layout.train_file("shop_a")
    assert generated.predict_file == layout.predict_file("shop_a")
    for path in (generated.train_file, generated.predict_file):
        assert path.is_file()
        assert path.stat().st_mode & 0o044 == 0o044  # readable by other processes
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_regenerating_overwrites_existing_files(shop_a, layout):
    layout.train_file("shop_a").parent.mkdir(parents=True)
    layout.train_file("shop_a").write_bytes(b"stale")
    result = generate_client_data(shop_a, layout, seed=1)
    assert result.train_file.read_bytes()[:2] == b"\x1f\x8b"
    assert len(_read(result.train_file)) == result.train_rows


def test_column_layout_of_both_files(generated, shop_a):
    train = _read(generated.train_file)
    predict = _read(generated.predict_file)
    assert list(train.columns) == ["product_id", *shop_a.features, "category_id"]
    assert list(predict.columns) == ["product_id", *shop_a.features]


def test_row_counts(generated):
    train = _read(generated.train_file)
    predict = _read(generated.predict_file)
    assert (generated.train_rows, generated.predict_rows) == (2400, 600)
    assert (len(train), len(predict)) == (2400, 600)


@pytest.mark.parametrize(
    ("products", "train_rows", "predict_rows"), [(10, 8, 2), (3, 2, 1), (2, 1, 1)]
)
def test_small_catalogues_keep_at_least_one_prediction_row(
    shop_a, layout, products, train_rows, predict_rows
):
    result = generate_client_data(shop_a, layout, products=products, categories=2)
    assert (result.train_rows, result.predict_rows) == (train_rows, predict_rows)
    assert len(_read(result.predict_file)) == predict_rows
    assert _read(result.train_file)["category_id"].nunique() == min(2, train_rows)


def test_more_categories_than_training_rows_are_capped(shop_a, layout):
    result = generate_client_data(shop_a, layout, products=10, categories=50)
    train = _read(result.train_file)
    assert result.categories == 8
    assert train["category_id"].nunique() == 8


def test_category_count_and_long_tail(generated):
    counts = _read(generated.train_file)["category_id"].value_counts()
    assert generated.categories == 40
    assert len(counts) == 40
    assert counts.min() >= 3
    assert counts.max() >= 5 * counts.median()


def test_overrides_change_sizes(shop_a, layout):
    result = generate_client_data(shop_a, layout, products=1000, categories=7)
    train = _read(result.train_file)
    assert (result.train_rows, result.predict_rows, result.categories) == (800, 200, 7)
    assert train["category_id"].value_counts().min() >= 3


def test_category_ids_look_real_and_are_unique(generated):
    categories = _read(generated.train_file)["category_id"].unique()
    pattern = re.compile(r"^shop/[a-z]+/[a-z]+-\d{3}$")
    assert all(pattern.match(c) for c in categories), categories[:5]
    numbers = {c.rsplit("-", 1)[1] for c in categories}
    assert len(numbers) == len(categories)


def test_missing_values_only_in_features(generated, shop_a):
    train = _read(generated.train_file)
    predict = _read(generated.predict_file)
    features = list(shop_a.features)
    share = train[features].isna().to_numpy().mean()
    assert 0.03 < share < 0.07  # missing_share: 0.05
    assert predict[features].isna().to_numpy().any()
    assert train[features].isna().any().all()  # every feature has some gaps
    assert train[["product_id", "category_id"]].notna().all().all()
    assert predict["product_id"].notna().all()
    with gzip.open(generated.train_file, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()[1:]
    assert not any(line.startswith(",") or line.endswith(",") for line in lines)


def test_no_missing_values_when_share_is_zero(shop_a, layout):
    client = shop_a.model_copy(
        update={"sample_data": shop_a.sample_data.model_copy(update={"missing_share": 0.0})}
    )
    result = generate_client_data(client, layout)
    assert not _read(result.train_file).isna().any().any()


def test_product_ids_are_unique_across_train_and_predict(generated):
    ids = pd.concat(
        [_read(generated.train_file)["product_id"], _read(generated.predict_file)["product_id"]]
    )
    assert len(ids) == 3000
    assert ids.is_unique
    assert ids.str.fullmatch(r"P-shop_a-\d{6}").all()


def test_train_file_reads_with_string_ids(generated):
    train = pd.read_csv(generated.train_file, dtype={"product_id": str, "category_id": str})
    assert train["product_id"].map(type).eq(str).all()
    assert train["category_id"].map(type).eq(str).all()
    assert train["product_id"].iloc[0].startswith("P-shop_a-")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("price", "price"),
        ("unit_price", "price"),
        ("is_new", "flag"),
        ("has_lid", "flag"),
        ("waterproof", "flag"),
        ("battery_powered", "flag"),
        ("assembly_required", "flag"),
        ("color_code", "code"),
        ("n_reviews", "count"),
        ("pages", "count"),
        ("weight_g", "measure"),
        ("rating", "rating"),
        ("brand_score", "continuous"),
        ("temp_rating_c", "continuous"),
    ],
)
def test_feature_kind_from_name(name, kind):
    assert feature_kind(name) == kind


def test_feature_values_match_their_kind(generated):
    train = _read(generated.train_file)
    prices = train["price"].dropna()
    assert (prices > 0).all()
    assert prices.max() > 5 * prices.median()  # log-normal: a long right tail
    assert set(train["is_new"].dropna().unique()) == {0, 1}
    for column in ("n_reviews", "color_code"):
        values = train[column].dropna()
        assert (values >= 0).all()
        assert (values == values.round()).all()
    assert train["color_code"].nunique() <= 12
    assert train["rating"].dropna().between(1.0, 5.0).all()
    assert train["brand_score"].nunique() > 1000  # continuous
    raw = pd.read_csv(generated.train_file, dtype=str)
    for column in ("is_new", "n_reviews", "color_code"):  # integers are written without ".0"
        assert raw[column].dropna().str.fullmatch(r"\d+").all(), column


def test_features_carry_signal_for_a_random_forest(generated, shop_a):
    train = _read(generated.train_file)
    x = train[list(shop_a.features)]
    y = train["category_id"]
    x_fit, x_test, y_fit, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    model = RandomForestClassifier(
        n_estimators=50, min_samples_leaf=3, random_state=0, n_jobs=1
    ).fit(x_fit, y_fit)
    top5 = model.classes_[np.argsort(-model.predict_proba(x_test), axis=1)[:, :5]]
    accuracy = float(np.mean([label in row for label, row in zip(y_test, top5, strict=True)]))

    n_categories = y.nunique()
    chance = 5 / n_categories
    prior = y_fit.value_counts().iloc[:5].sum() / len(y_fit)  # always guess the 5 most common
    assert accuracy > min(3 * chance, 0.9)
    assert accuracy > prior + 0.1


def test_hundred_thousand_products_generate(shop_a, layout):
    result = generate_client_data(shop_a, layout, products=100_000, categories=100)
    assert result.train_rows + result.predict_rows == 100_000
    assert result.categories == 100
