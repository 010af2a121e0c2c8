"""Loading a client's gzip CSVs: exact round trips, and one clear DataError per broken file."""

from __future__ import annotations

import csv
import gzip
import io
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from bettercat_assets.core.config.clients import ClientConfig, DataChecks, QualityGate, SampleData
from bettercat_assets.core.config.errors import BettercatError, DataError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.data.loading import (
    check_scoring_header,
    file_fingerprint,
    load_scoring_table,
    load_training_table,
    read_header,
)

CID = "acme_shop"
FEATURES = ("price", "weight_g")
HEADER = ["product_id", "price", "weight_g", "category_id"]


def make_client(client_id: str = CID, features: tuple[str, ...] = FEATURES) -> ClientConfig:
    return ClientConfig(
        client_id=client_id,
        features=features,
        model_params={},
        top_k=5,
        test_size=0.2,
        quality_gate=QualityGate(),
        data_checks=DataChecks(),
        sample_data=SampleData(),
    )


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def write_gz(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data))
    return path


def write_rows(tmp_path: Path, rows: list[list[str]], name: str = "data_train.csv.gz") -> Path:
    return write_gz(tmp_path / name, csv_text(rows))


GOOD_ROWS = [
    HEADER,
    ["p1", "10.5", "200", "shoes"],
    ["Ünïcode, ltd ✓", "", "300", "Bags, leather & more"],
    ['say "hi"', "NaN", "", "NA"],
    ["p4", " 7 ", "null", "null"],
    ["p5", "-1e3", "NA", "shoes"],
]


def training_error(path: Path, client: ClientConfig | None = None) -> DataError:
    with pytest.raises(DataError) as info:
        load_training_table(client or make_client(), path)
    return info.value


def assert_names(err: DataError, path: Path, *fragments: str, client_id: str = CID) -> str:
    message = str(err)
    assert f"client '{client_id}'" in message, message
    assert str(path) in message, message
    assert err.client_id == client_id
    assert err.path == str(path)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message
    return message


# --- happy paths --------------------------------------------------------------------------------


def test_training_table_round_trips_ids_labels_and_missing_values(tmp_path):
    path = write_rows(tmp_path, GOOD_ROWS)
    table = load_training_table(make_client(), path)

    assert table.client_id == CID
    assert table.path == path
    assert table.rows == 5
    assert table.product_ids.tolist() == ["p1", "Ünïcode, ltd ✓", 'say "hi"', "p4", "p5"]
    # Labels are exact strings: "NA" and "null" are categories, not missing values.
    assert table.labels.tolist() == ["shoes", "Bags, leather & more", "NA", "null", "shoes"]
    assert table.classes == sorted({"shoes", "Bags, leather & more", "NA", "null"})
    assert list(table.features.columns) == list(FEATURES)
    assert all(dtype == np.float64 for dtype in table.features.dtypes)

    price = table.features["price"].tolist()
    weight = table.features["weight_g"].tolist()
    assert price[0] == 10.5 and price[3] == 7.0 and price[4] == -1000.0
    assert math.isnan(price[1]) and math.isnan(price[2])
    assert weight[:2] == [200.0, 300.0]
    assert all(math.isnan(v) for v in weight[2:])
    assert table.fingerprint == file_fingerprint(path)
    assert len(table.fingerprint) == 64


def test_training_ignores_extra_columns_and_column_order(tmp_path):
    rows = [
        ["category_id", "notes", "weight_g", "product_id", "price"],
        ["a", "free text, with comma", "1", "p1", "2"],
        ["b", "", "3", "p2", "4"],
    ]
    table = load_training_table(make_client(), write_rows(tmp_path, rows))
    assert table.product_ids.tolist() == ["p1", "p2"]
    assert table.labels.tolist() == ["a", "b"]
    assert table.features.to_dict("list") == {"price": [2.0, 4.0], "weight_g": [1.0, 3.0]}


def test_trailing_delimiter_does_not_shift_columns(tmp_path):
    text = "product_id,price,extra,weight_g,category_id\np1,1,x,2,a,\np2,3,y,4,b,\n"
    table = load_training_table(make_client(), write_gz(tmp_path / "t.csv.gz", text))
    assert table.product_ids.tolist() == ["p1", "p2"]
    assert table.labels.tolist() == ["a", "b"]
    assert table.features.to_dict("list") == {"price": [1.0, 3.0], "weight_g": [2.0, 4.0]}


def test_utf8_bom_does_not_hide_first_column(tmp_path):
    text = "\ufeff" + csv_text([HEADER, ["p1", "1", "2", "a"], ["p2", "3", "4", "b"]])
    path = write_gz(tmp_path / "bom.csv.gz", text)
    assert read_header(CID, path) == HEADER
    assert load_training_table(make_client(), path).product_ids.tolist() == ["p1", "p2"]


def test_scoring_table_round_trips(tmp_path):
    rows = [
        ["product_id", "price", "weight_g"],
        ["Ünïcode, ltd ✓", "1.5", ""],
        ["NA", "nan", "2"],
    ]
    path = write_rows(tmp_path, rows, "data_predict.csv.gz")
    frame = load_scoring_table(make_client(), path, list(FEATURES))
    assert list(frame.columns) == ["product_id", "price", "weight_g"]
    assert frame["product_id"].tolist() == ["Ünïcode, ltd ✓", "NA"]
    assert frame["price"].iloc[0] == 1.5 and math.isnan(frame["price"].iloc[1])
    assert math.isnan(frame["weight_g"].iloc[0]) and frame["weight_g"].iloc[1] == 2.0


def test_read_header_returns_columns_in_file_order(tmp_path):
    path = write_rows(tmp_path, [["b", "a, with comma", "ü"], ["1", "2", "3"]])
    assert read_header(CID, path) == ["b", "a, with comma", "ü"]


# --- file-level problems -------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "train" / "data_train.csv.gz"
    assert_names(training_error(path), path, "file not found")
    with pytest.raises(DataError, match="file not found"):
        read_header(CID, path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "data_train.csv.gz"
    path.write_bytes(b"")
    assert_names(training_error(path), path, "empty", "0 bytes")


def test_gzip_of_empty_content(tmp_path):
    path = write_gz(tmp_path / "data_train.csv.gz", b"")
    assert_names(training_error(path), path, "empty", "no header")


def test_header_only(tmp_path):
    path = write_rows(tmp_path, [HEADER])
    assert_names(training_error(path), path, "no data rows", "header only")


def test_plain_text_named_csv_gz(tmp_path):
    path = tmp_path / "data_train.csv.gz"
    path.write_text(csv_text(GOOD_ROWS), encoding="utf-8")
    assert_names(training_error(path), path, "not a gzip file")


def test_truncated_gzip(tmp_path):
    rows = [HEADER] + [[f"p{i}", str(i), str(i), f"c{i % 3}"] for i in range(3000)]
    blob = gzip.compress(csv_text(rows).encode())
    path = tmp_path / "data_train.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    assert_names(training_error(path), path, "malformed CSV")


def test_not_utf8(tmp_path):
    path = write_gz(tmp_path / "data_train.csv.gz", "product_id,pr\xefce\n".encode("latin-1"))
    assert_names(training_error(path), path, "cannot read gzip CSV")


# --- column-level problems -----------------------------------------------------------------------


def test_missing_feature_column(tmp_path):
    path = write_rows(tmp_path, [["product_id", "price", "category_id"], ["p1", "1", "a"]])
    assert_names(training_error(path), path, "missing column 'weight_g'")


def test_missing_several_columns_names_each(tmp_path):
    path = write_rows(tmp_path, [["product_id", "other"], ["p1", "1"]])
    assert_names(
        training_error(path), path, "missing columns", "'price'", "'weight_g'", "'category_id'"
    )


def test_missing_label_column(tmp_path):
    path = write_rows(tmp_path, [["product_id", "price", "weight_g"], ["p1", "1", "2"]])
    assert_names(training_error(path), path, "missing column 'category_id'")


def test_duplicate_header_column(tmp_path):
    rows = [HEADER + ["price"], ["p1", "1", "2", "a", "9"], ["p2", "3", "4", "b", "9"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "duplicate column(s) 'price'")


def test_non_numeric_feature_names_column_and_line(tmp_path):
    rows = [HEADER, ["p1", "1", "2", "a"], ["p2", "3", "4", "b"], ["p3", "1,5", "4", "b"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'price'", "numeric", "line 4", "'1,5'")


def test_infinite_feature_is_rejected(tmp_path):
    rows = [HEADER, ["p1", "1", "2", "a"], ["p2", "3", "inf", "b"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'weight_g'", "line 3", "'inf'")


def test_all_missing_feature_column(tmp_path):
    rows = [HEADER, ["p1", "1", "", "a"], ["p2", "3", "NaN", "b"], ["p3", "4", "null", "b"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'weight_g'", "all missing")


def test_single_class(tmp_path):
    rows = [HEADER, ["p1", "1", "2", "only"], ["p2", "3", "4", "only"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'category_id'", "single class 'only'")


def test_duplicate_product_id(tmp_path):
    rows = [HEADER, ["p1", "1", "2", "a"], ["p2", "3", "4", "b"], ["p1", "5", "6", "b"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'product_id'", "duplicate", "'p1'")


def test_empty_product_id(tmp_path):
    rows = [HEADER, ["p1", "1", "2", "a"], ["  ", "3", "4", "b"]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'product_id'", "empty on line 3")


def test_empty_label(tmp_path):
    rows = [HEADER, ["p1", "1", "2", "a"], ["p2", "3", "4", "b"], ["p3", "3", "4", ""]]
    path = write_rows(tmp_path, rows)
    assert_names(training_error(path), path, "column 'category_id'", "empty on line 4")


def test_row_with_too_many_fields(tmp_path):
    text = csv_text([HEADER, ["p1", "1", "2", "a"]]) + "p2,3,4,b,surplus\n"
    path = write_gz(tmp_path / "data_train.csv.gz", text)
    assert_names(training_error(path), path, "malformed CSV")


# --- scoring files ---------------------------------------------------------------------------------


def test_scoring_missing_feature(tmp_path):
    path = write_rows(tmp_path, [["product_id", "price"], ["p1", "1"]], "data_predict.csv.gz")
    with pytest.raises(DataError) as info:
        load_scoring_table(make_client(), path, list(FEATURES))
    assert_names(info.value, path, "missing column 'weight_g'")


def test_scoring_extra_columns_are_ignored_and_logged(tmp_path, caplog):
    rows = [["product_id", "price", "weight_g", "colour"], ["p1", "1", "2", "red"]]
    path = write_rows(tmp_path, rows, "data_predict.csv.gz")
    with caplog.at_level("INFO"):
        frame = load_scoring_table(make_client(), path, list(FEATURES))
    assert list(frame.columns) == ["product_id", *FEATURES]
    assert "ignoring column(s) 'colour'" in caplog.text and CID in caplog.text


def test_scoring_non_numeric_feature(tmp_path):
    rows = [["product_id", "price", "weight_g"], ["p1", "1", "2"], ["p2", "cheap", "2"]]
    path = write_rows(tmp_path, rows, "data_predict.csv.gz")
    with pytest.raises(DataError) as info:
        load_scoring_table(make_client(), path, list(FEATURES))
    assert_names(info.value, path, "column 'price'", "line 3", "'cheap'")


def test_check_scoring_header_directly(tmp_path):
    path = tmp_path / "x.csv.gz"
    check_scoring_header(
        CID, path, ["weight_g", "product_id", "price"], "product_id", list(FEATURES)
    )
    with pytest.raises(DataError) as info:
        check_scoring_header(CID, path, ["product_id", "price"], "product_id", list(FEATURES))
    assert_names(info.value, path, "missing column 'weight_g'")
    extra = check_scoring_header(
        CID, path, ["product_id", "price", "weight_g", "category_id"], "product_id", list(FEATURES)
    )
    assert extra == ["category_id"]
    with pytest.raises(DataError) as info:
        check_scoring_header(CID, path, ["price", "weight_g"], "product_id", list(FEATURES))
    assert_names(info.value, path, "missing column 'product_id'")


# --- DataLayout ----------------------------------------------------------------------------------


def test_layout_paths(tmp_path):
    layout = DataLayout(tmp_path)
    root = tmp_path.resolve()
    assert layout.train_file("acme") == root / "train" / "client_id=acme" / "data_train.csv.gz"
    assert layout.predict_file("acme") == (
        root / "prediction" / "client_id=acme" / "data_predict.csv.gz"
    )
    assert layout.predictions_root("acme") == root / "products_categories" / "client_id=acme"
    assert layout.predictions_dir("acme", date(2024, 3, 7)) == (
        root / "products_categories" / "client_id=acme" / "date=2024-03-07"
    )


def test_layout_prefix_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layout = DataLayout(Path("data"))
    assert layout.prefix == tmp_path.resolve() / "data"
    assert layout.train_file("a").is_relative_to(tmp_path.resolve() / "data" / "train")


@pytest.mark.parametrize("client_id", ["../x", "..", "a/b", "", "x" * 65, "a b", "/etc"])
def test_layout_rejects_unsafe_client_ids(tmp_path, client_id):
    layout = DataLayout(tmp_path)
    for method in (layout.train_file, layout.predict_file, layout.predictions_root):
        with pytest.raises(BettercatError, match="not a safe identifier"):
            method(client_id)
