"""clients.yaml feature kinds, text settings and model kind: syntax, merging and errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from bettercat_assets.core.config.clients import load_clients
from bettercat_assets.core.config.errors import ConfigError, DataError
from bettercat_assets.core.data.loading import load_training_table

TEXT_CLIENT = """\
defaults:
  text: {word_ngrams: [1, 1], max_features: 5000}
  model_params: {n_estimators: 10, min_samples_leaf: 5}
clients:
  - client_id: shop
    features:
      - price
      - {name: title, kind: text}
      - {name: brand, kind: categorical}
    text: {char_ngrams: null}
    model: {kind: linear, params: {C: 3.0}}
  - client_id: plain
    features: [price, weight_g]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_feature_kinds_text_settings_and_model_kind_merge(tmp_path):
    registry = load_clients(write(tmp_path, TEXT_CLIENT))
    shop, plain = registry.get("shop"), registry.get("plain")
    assert shop.features == ("price", "title", "brand")
    assert [(s.name, s.kind) for s in shop.feature_specs] == [
        ("price", "numeric"),
        ("title", "text"),
        ("brand", "categorical"),
    ]
    # client's text settings override field by field; the rest come from `defaults`
    assert shop.text.word_ngrams == (1, 1) and shop.text.max_features == 5000
    assert shop.text.char_ngrams is None
    assert shop.model.kind == "linear" and shop.model.linear_params["C"] == 3.0
    assert plain.model.kind == "random_forest" and plain.text.char_ngrams == (2, 4)
    assert not plain.has_text_or_categorical and shop.has_text_or_categorical
    # forests of text clients get defaults.text_model_params over model_params
    assert plain.model_params["min_samples_leaf"] == 5 and shop.model_params["n_estimators"] == 10
    assert shop.model_params["min_samples_leaf"] == 1


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ("[price, {name: title, kind: txt}]", "unknown kind 'txt' (did you mean 'text'?)"),
        ("[price, {name: brand, kind: categorial}]", "(did you mean 'categorical'?)"),
        ("[price, {name: title, knd: text}]", "unknown key 'knd' (did you mean 'kind'?)"),
        ("[price, {kind: text}]", "'name' must be a column name"),
        ("[price, {name: price, kind: text}]", "duplicate feature(s): price"),
        ("[{name: category_id, kind: text}]", "'category_id' is reserved"),
    ],
)
def test_feature_mistakes_fail_that_client_alone(tmp_path, features, expected):
    text = f"clients:\n  - client_id: bad\n    features: {features}\n"
    text += "  - client_id: good\n    features: [price]\n"
    registry = load_clients(write(tmp_path, text))
    assert registry.get("good").features == ("price",)
    with pytest.raises(ConfigError) as info:
        registry.get("bad")
    message = str(info.value)
    assert expected in message and "client 'bad'" in message and "features" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("text: {word_ngrams: [3, 1]}", "word_ngrams: need 1 <= min <= max <= 8"),
        ("text: {max_feature: 10}", "text.max_feature: Extra inputs are not permitted"),
        ("model: {kind: linar}", "unknown model kind 'linar' (did you mean 'linear'?)"),
        ("model: {kind: linear, params: {CC: 1}}", "LogisticRegression parameter 'CC'"),
        ("model: {kind: linear, params: {C: -1}}", "'C' parameter"),
    ],
)
def test_text_and_model_settings_are_validated(tmp_path, extra, expected):
    text = f"clients:\n  - client_id: bad\n    features: [price]\n    {extra}\n"
    text += "  - client_id: good\n    features: [price]\n"
    registry = load_clients(write(tmp_path, text))
    with pytest.raises(ConfigError) as info:
        registry.get("bad")
    assert expected in str(info.value)
    assert registry.get("good")


def test_bad_text_defaults_fail_the_file(tmp_path):
    with pytest.raises(ConfigError, match="defaults.text: char_ngrams: need 1"):
        load_clients(
            write(
                tmp_path,
                "defaults:\n  text: {char_ngrams: [0, 2]}\n"
                + TEXT_CLIENT[TEXT_CLIENT.index("clients:") :],
            )
        )


def test_text_column_declared_numeric_names_client_file_column_and_fix(tmp_path):
    registry = load_clients(
        write(tmp_path, "clients:\n  - client_id: shop\n    features: [price, title]\n")
    )
    path = tmp_path / "data_train.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("product_id,price,title,category_id\np1,3.5,Red shoe,a\np2,4,Blue boot,b\n")
    with pytest.raises(DataError) as info:
        load_training_table(registry.get("shop"), path)
    message = str(info.value)
    assert "\n" not in message
    for part in ("shop", str(path), "column 'title'", "{name: title, kind: text}"):
        assert part in message


def test_text_and_categorical_columns_load_as_strings_with_missing_as_empty(tmp_path):
    text = "clients:\n  - client_id: shop\n    features: [price, {name: title, kind: text}, {name: brand, kind: categorical}]\n"
    client = load_clients(write(tmp_path, text)).get("shop")
    path = tmp_path / "data_train.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(
            "product_id,price,title,brand,category_id,extra\np1,,Ünïcode 日本,,a,x\np2,4,,acme,b,y\n"
        )
    table = load_training_table(client, path)
    assert table.features["title"].tolist() == ["Ünïcode 日本", ""]
    assert table.features["brand"].tolist() == ["", "acme"]
    assert table.features["price"].isna().tolist() == [True, False]


def test_training_data_checks_read_text_as_text(tmp_path):
    import pandas as pd

    from bettercat_assets.core.data.quality import check_null_share, check_schema

    text = "clients:\n  - client_id: shop\n    features: [price, {name: title, kind: text}]\n"
    client = load_clients(write(tmp_path, text)).get("shop")
    raw = pd.DataFrame(
        {
            "product_id": ["a", "b"],
            "price": ["1", "2"],
            "title": ["Red shoe", ""],
            "category_id": ["x", "y"],
        }
    )
    assert check_schema(client, raw, tmp_path / "f.csv.gz").passed
    assert check_null_share(client, raw, tmp_path / "f.csv.gz").passed  # empty titles are fine
    numeric = load_clients(write(tmp_path, text.replace("{name: title, kind: text}", "title")))
    outcome = check_schema(numeric.get("shop"), raw, tmp_path / "f.csv.gz")
    assert not outcome.passed and "column 'title' must be numeric" in outcome.description
