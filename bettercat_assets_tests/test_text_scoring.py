"""Text clients through the real pipeline: training, one shared Spark pass with a numeric-only
client, the registered pyfunc and `bettercat serve` answer the fitted scikit-learn pipeline's
scores (within 1e-6) for both model kinds, with unicode, empty and missing text, unseen
categories and extra columns; a tampered featurizer in the registry is refused."""

from __future__ import annotations

import gzip
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from bettercat_assets.core.config.errors import UnsafeModelError
from bettercat_assets.core.model import store as model_store
from bettercat_assets_tests import process_support
from bettercat_assets_tests.reliability_support import write_clients_file

DAY = date(2026, 6, 2)
TEXT_FEATURES = "[price, {name: title, kind: text}, {name: brand, kind: categorical}]"
CLIENTS = {
    "text_rf": f"{{client_id: text_rf, features: {TEXT_FEATURES}, "
    "model_params: {n_estimators: 15, min_samples_leaf: 1}, "
    "sample_data: {products: 700, categories: 8, missing_share: 0.05}}",
    "text_linear": f"{{client_id: text_linear, features: {TEXT_FEATURES}, model: {{kind: linear}}, "
    "sample_data: {products: 700, categories: 8, missing_share: 0.05}}",
    "numbers_only": "{client_id: numbers_only, features: [price, weight_g], "
    "model_params: {n_estimators: 10}, sample_data: {products: 400, categories: 8}}",
}
UNUSUAL = [  # title, brand: unicode, empty and missing text, unseen and missing categories
    ("Ǆungla İstanbul straße 日本語テキスト café", "never-seen-brand"),
    ("", ""),
    (None, None),
    ("  lead   trail  ΣΊΣΥΦΟΣ ", "Brand-Ünï"),
]


def _add_unusual_rows_and_an_extra_column(path: Path) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    extra = pd.DataFrame(
        [
            {"product_id": f"odd-{i}", "price": "" if i % 2 else "7.5", "title": t, "brand": b}
            for i, (t, b) in enumerate(UNUSUAL)
        ]
    )
    frame = pd.concat([frame, extra], ignore_index=True).fillna("")
    frame["catalogue_note"] = "not a feature"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tracking_settings):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("text")
    registry = load_clients(write_clients_file(root / "clients.yaml", CLIENTS.values()))
    layout = DataLayout(root / "data")
    versions = {}
    for cid in CLIENTS:
        generate_client_data(registry.get(cid), layout, seed=5)
        versions[cid] = train_model(
            registry.get(cid), DAY, layout=layout, settings=tracking_settings
        ).version
        if cid != "numbers_only":
            _add_unusual_rows_and_an_extra_column(layout.predict_file(cid))
    return registry, layout, versions


def _reference(registry, layout, cid: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The scikit-learn pipeline refitted exactly as training did the registered model (every
    row with `refit_on_all_rows`, else the same split; same seeds)."""
    from bettercat_assets.core.data.loading import load_scoring_table, load_training_table
    from bettercat_assets.core.training.fitting import fit_client_model
    from bettercat_assets.core.training.split import split_train_test

    client = registry.get(cid)
    table = load_training_table(client, layout.train_file(cid))
    seed = int(client.model_params.get("random_state") or 0)
    x_train, _, y_train, _ = split_train_test(table, client.test_size, seed)
    if client.refit_on_all_rows:
        x_train, y_train = table.features, table.labels.to_numpy()
    fitted = fit_client_model(client, x_train, y_train)
    kinds = {s.name: s.kind for s in client.feature_specs}
    products = load_scoring_table(client, layout.predict_file(cid), list(client.features), kinds)
    return products, fitted.predict_proba(products[list(client.features)]), fitted.classes_


def _assert_rows_equal_reference(rows: pd.DataFrame, products, proba, classes) -> None:
    position = {p: i for i, p in enumerate(products["product_id"])}
    label = {c: j for j, c in enumerate(classes)}
    expected = proba[rows["product_id"].map(position), rows["pred_label"].map(label)]
    assert np.abs(expected - rows["pred_score"].to_numpy(np.float64)).max() <= 1e-6
    best = classes[np.argsort(-proba, axis=1, kind="stable")[:, 0]]
    top = rows[rows["rank"] == 0].set_index("product_id")["pred_label"]
    assert (top.loc[products["product_id"]].to_numpy() == best).all()
    assert len(rows) == 5 * len(products)


@pytest.mark.integration
def test_one_spark_pass_scores_text_clients_exactly(trained, tracking_settings, spark, caplog):
    from bettercat_assets.core.scoring.spark_pass import ScoringRequest, score_clients

    registry, layout, _ = trained
    with caplog.at_level("INFO"):
        results = score_clients(
            [ScoringRequest(registry.get(cid)) for cid in CLIENTS],
            DAY,
            spark=spark,
            layout=layout,
            settings=tracking_settings,
        )
    assert "ignoring column(s) 'catalogue_note'" in caplog.text
    for cid in CLIENTS:
        result = results[cid]
        assert not isinstance(result, BaseException), result
        rows = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()
        _assert_rows_equal_reference(rows, *_reference(registry, layout, cid))
        if cid != "numbers_only":
            assert {f"odd-{i}" for i in range(len(UNUSUAL))} <= set(rows["product_id"])
            # monitored in the same pass: the brand's top values, the title's two measures
            profiled = {s.name for s in result.monitoring.features}
            assert profiled == {"price", "brand", "title.length", "title.vocabulary"}


@pytest.mark.integration
@pytest.mark.parametrize("cid", ["text_rf", "text_linear"])
def test_registered_pyfunc_declares_strings_and_equals_scikit_learn(trained, cid):
    import mlflow

    registry, layout, _ = trained
    model = mlflow.pyfunc.load_model(f"models:/{cid}_model@champion")
    schema = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    assert schema == {
        "product_id": "string",
        "price": "double",
        "title": "string",
        "brand": "string",
    }
    products, proba, classes = _reference(registry, layout, cid)
    served = model.predict(products.assign(title=products["title"].replace("", None)))
    _assert_rows_equal_reference(served, products, proba, classes)


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.integration
def test_bettercat_serve_answers_a_title_and_names_a_missing_text_column(
    trained, tracking_settings, tmp_path
):
    import mlflow

    registry, _, _ = trained
    port = process_support.free_port()
    venv_bin = str(Path(sys.executable).parent)
    server = process_support.start_process(
        "bettercat serve",
        [Path(venv_bin) / "bettercat", "serve", "--client-id", "text_rf", "--port", port],
        env={
            **os.environ,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": tracking_settings.tracking_uri,
            "BETTERCAT_CLIENTS_FILE": str(registry.path),
            "BETTERCAT_HOME": str(tmp_path / "home"),
        },
        log=tmp_path / "serve.log",
    )
    url = f"http://127.0.0.1:{port}"
    products = [
        {"product_id": "p1", "price": 12.5, "title": "Brego boxes faici crème", "brand": "Kousha"},
        {"product_id": "p2", "price": None, "title": None, "brand": "never-seen"},
    ]
    try:
        process_support.wait_for_http(f"{url}/ping", 180, processes=[server])
        status, body = _post(f"{url}/invocations", {"dataframe_records": products})
        assert status == 200, body
        answer = pd.DataFrame(body["predictions"])
        expected = mlflow.pyfunc.load_model("models:/text_rf_model@champion").predict(
            pd.DataFrame(products)
        )
        assert answer["pred_label"].tolist() == expected["pred_label"].tolist()
        assert np.allclose(answer["pred_score"], expected["pred_score"], atol=1e-6)
        no_title = [{k: v for k, v in p.items() if k != "title"} for p in products]
        status, body = _post(f"{url}/invocations", {"dataframe_records": no_title})
        assert status == 400 and "title" in body["message"], (status, body)
    finally:
        server.stop()


@pytest.mark.integration
def test_a_tampered_featurizer_in_the_registry_is_refused(trained, tracking_settings):
    _, _, versions = trained
    name, version = "text_linear_model", versions["text_linear"]
    uri = model_store.compact_artifact_uri(tracking_settings, name, version)
    npz = Path(urlparse(uri).path) / "featurizer.npz"
    saved = npz.read_bytes()
    try:
        npz.write_bytes(saved[:-10] + bytes(10))
        model_store._CACHE.clear()
        with pytest.raises(UnsafeModelError, match="tampered with.*featurizer.npz.*checksum"):
            model_store.load_scoring_model(tracking_settings, name, version)
    finally:
        npz.write_bytes(saved)
        model_store._CACHE.clear()
