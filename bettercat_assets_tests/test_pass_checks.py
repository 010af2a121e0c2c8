"""Each kind of wrong output, injected into a real classic-Spark scoring pass, fails its own
client's checks only (the Spark Connect twin is in test_spark_connect.py)."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from bettercat_assets_tests import pass_checks_support as support

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(registry, layout, tracking_settings, sample_data):
    support.train_clients(registry, layout, tracking_settings)


def test_wrong_outputs_fail_their_client_only(
    trained, spark, registry, layout, tracking_settings, sample_data, monkeypatch
):
    results = support.score_with_defects(spark, registry, layout, tracking_settings, monkeypatch)
    support.assert_each_defect_fails_its_client_only(results)
    good = results[support.GOOD]
    products = sample_data[support.GOOD].predict_rows
    assert good.products_scored == products
    assert good.rows_written == products * 5
    written = ds.dataset(good.output_dir, format="parquet").count_rows()
    assert written == good.rows_written
    missing = results["golf"].checks
    text = next(c.description for c in missing if c.name == "all_products_scored")
    assert "input product(s) not scored, e.g. " in text, text
