"""Real-time top-k serving: the registered pyfunc, `mlflow models serve`, `bettercat serve`,
`spark_udf`, and versions registered before (sklearn-only layout)."""

from __future__ import annotations

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
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModelContext
from sklearn.ensemble import RandomForestClassifier

from bettercat_assets.core.model import pyfunc as serving_model
from bettercat_assets.core.model import store as model_store
from bettercat_assets.core.model.compact_forest import CompactForest
from bettercat_assets.core.model.forest_conversion import compact_from_sklearn
from bettercat_assets_tests import process_support
from bettercat_assets_tests.reliability_support import assert_one_error_line, write_clients_file

CID = "serve_shop"
MODEL = f"{CID}_model"
FEATURES = ["price", "weight_g", "rating"]
DAY = date(2026, 6, 1)
OUTPUT_COLUMNS = ["product_id", "pred_label", "pred_score", "rank", "model_version"]


def _local(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)


# --- the PythonModel on its own (no registry) ------------------------------------------------


def _context(tmp_path: Path, classes: int, version: int | None, **config) -> PythonModelContext:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.array([f"cat-{i % classes}" for i in range(200)])
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        pd.DataFrame(X, columns=["a", "b"]), y
    )
    compact = tmp_path / "compact"
    compact_from_sklearn(forest).save(compact)
    registration = tmp_path / serving_model.REGISTRATION_FILE
    registration.write_text(serving_model.registration_document("m", version))
    return PythonModelContext(
        artifacts={"compact": str(compact), "registration": str(registration)},
        model_config={"id_column": "sku", "top_k": 5, **config},
    )


def _loaded(context: PythonModelContext) -> serving_model.TopKCategoriesModel:
    model = serving_model.TopKCategoriesModel()
    model.load_context(context)
    return model


def test_python_model_rows_fewer_categories_and_errors(tmp_path):
    model = _loaded(_context(tmp_path, classes=3, version=7))
    frame = pd.DataFrame({"sku": ["x", "y"], "a": [0.1, np.nan], "b": [1.0, -2.0]})
    rows = model.predict(None, frame)
    assert list(rows.columns) == OUTPUT_COLUMNS
    assert len(rows) == 2 * 3  # k=5, but only 3 categories
    assert rows["product_id"].tolist() == ["x"] * 3 + ["y"] * 3
    assert rows["rank"].tolist() == [0, 1, 2] * 2
    assert set(rows["model_version"]) == {7}
    for _, group in rows.groupby("product_id"):
        assert group["pred_score"].is_monotonic_decreasing
        assert abs(group["pred_score"].sum() - 1) < 1e-6

    wide = model.predict(None, frame, params={"output": "per_product"})
    assert wide["product_id"].tolist() == ["x", "y"]
    assert [list(v) for v in wide["pred_labels"]] == [
        g["pred_label"].tolist() for _, g in rows.groupby("product_id")
    ]

    with pytest.raises(MlflowException, match="missing column.*'b'"):
        model.predict(None, frame.drop(columns="b"))
    with pytest.raises(MlflowException, match="column 'a' must be numeric"):
        model.predict(None, frame.assign(a=["cheap", "dear"]))
    with pytest.raises(MlflowException, match="column 'b' holds infinity"):
        model.predict(None, frame.assign(b=[np.inf, 1.0]))
    with pytest.raises(MlflowException, match="param 'output' must be one of"):
        model.predict(None, frame, params={"output": "wide"})


def test_python_model_version_from_registration_or_config(tmp_path):
    assert _loaded(_context(tmp_path / "a", 4, version=None)).model_version == -1
    assert _loaded(_context(tmp_path / "b", 4, version=3)).model_version == 3
    assert _loaded(_context(tmp_path / "c", 4, version=3, model_version=9)).model_version == 9
    broken = _context(tmp_path / "d", 4, version=3)
    Path(broken.artifacts["compact"], "compact_forest.npz").write_bytes(b"junk")
    with pytest.raises(MlflowException, match="compact model refused.*checksum"):
        _loaded(broken)


# --- a registered champion ------------------------------------------------------------------


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tracking_settings):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("serving")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {CID}, features: [{', '.join(FEATURES)}], "
            "sample_data: {products: 400, categories: 9}}"
        ],
    )
    registry = load_clients(clients_file)
    layout = DataLayout(root / "data")
    generate_client_data(registry.get(CID), layout, seed=12)
    result = train_model(registry.get(CID), DAY, layout=layout, settings=tracking_settings)
    assert result.champion_version == result.version
    products = pd.read_csv(layout.predict_file(CID), dtype={"product_id": str})
    return registry, layout, result.version, products


@pytest.mark.integration
def test_pyfunc_champion_matches_the_batch_parquet(champion, tracking_settings, spark):
    import mlflow

    from bettercat_assets.core.scoring.spark_pass import predict_categories

    registry, layout, version, products = champion
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    assert model.metadata.get_input_schema().input_names() == ["product_id", *FEATURES]
    served = model.predict(products)
    assert list(served.columns) == OUTPUT_COLUMNS

    result = predict_categories(
        registry.get(CID), DAY, spark=spark, layout=layout, settings=tracking_settings
    )
    assert result.model_version == version
    batch = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()
    keys = ["product_id", "rank"]
    merged = batch.merge(served, on=keys, how="outer", suffixes=("_batch", "_served"))
    assert len(merged) == len(batch) == len(served) == 5 * len(products)
    assert (merged["pred_label_batch"] == merged["pred_label_served"]).all()
    assert np.abs(merged["pred_score_batch"] - merged["pred_score_served"]).max() <= 1e-6
    assert set(merged["model_version_served"]) == set(merged["model_version_batch"]) == {version}


@pytest.mark.integration
def test_loading_the_pyfunc_never_touches_the_sklearn_forest(champion, tracking_settings):
    """The skops file is broken on purpose and every open() is watched: loading and predicting
    with the registered model neither reads it nor downloads it."""
    import mlflow
    import skops.io

    _, _, version, products = champion
    skops_file = _local(model_store.sklearn_artifact_uri(tracking_settings, MODEL, version))
    skops_file = skops_file / model_store.SKOPS_FILE
    saved = skops_file.read_bytes()
    opened: list[str] = []
    watching: list[bool] = []

    def audit(event: str, args: tuple) -> None:
        if watching and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(audit)  # hooks cannot be removed: `watching` switches it off
    try:
        skops_file.write_bytes(b"not a skops file")
        watching.append(True)
        original_load = skops.io.load
        skops.io.load = lambda *a, **k: pytest.fail("skops.io.load called")
        try:
            model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
            rows = model.predict(products.head(3))
        finally:
            skops.io.load = original_load
    finally:
        watching.clear()
        skops_file.write_bytes(saved)
    assert model_store.load_sklearn(tracking_settings, MODEL, version).n_estimators > 0
    assert len(rows) == 15
    assert opened, "the audit hook saw no file opened at all"
    assert any(p.endswith("compact_forest.npz") for p in opened), opened
    assert not [p for p in opened if p.endswith(".skops") or "sklearn_model" in p]
    assert "sklearn" not in model.metadata.flavors


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _assert_stopped(server: process_support.ManagedProcess, port: int) -> None:
    """The whole process group is gone and nothing listens on the port any more."""
    assert not server.alive

    def group_gone() -> bool:  # an orphaned child may wait a moment to be reaped
        try:
            os.killpg(server.popen.pid, 0)
        except ProcessLookupError:
            return True
        return False

    process_support.wait_until(group_gone, 10, "server's process group gone", interval=0.2)
    with pytest.raises(ConnectionRefusedError):
        process_support.socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _serve_env(tracking_settings) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_settings.tracking_uri,
    }


@pytest.mark.integration
def test_mlflow_models_serve_answers_top_k_and_survives_bad_input(
    champion, tracking_settings, tmp_path
):
    import mlflow

    _, _, version, products = champion
    port = process_support.free_port()
    server = process_support.start_process(
        "mlflow models serve",
        [
            Path(sys.executable).parent / "mlflow",
            *("models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        env=_serve_env(tracking_settings),
        log=tmp_path / "serve.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process_support.wait_for_http(f"{url}/ping", 120, processes=[server])
        three = products.head(3)
        status, body = _post(
            f"{url}/invocations",
            {"dataframe_split": json.loads(three.to_json(orient="split", index=False))},
        )
        assert status == 200, body
        answer = pd.DataFrame(body["predictions"])
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(three)
        assert answer[OUTPUT_COLUMNS[:2] + ["rank"]].equals(
            expected[OUTPUT_COLUMNS[:2] + ["rank"]].astype({"rank": "int64"})
        )
        assert np.allclose(answer["pred_score"], expected["pred_score"], atol=1e-6)
        assert set(answer["model_version"]) == {version}

        records = json.loads(three.drop(columns="weight_g").to_json(orient="records"))
        status, body = _post(f"{url}/invocations", {"dataframe_records": records})
        assert 400 <= status < 500 and "weight_g" in body["message"], (status, body)
        bad = json.loads(three.head(1).assign(price="cheap").to_json(orient="records"))
        status, body = _post(f"{url}/invocations", {"dataframe_records": bad})
        assert 400 <= status < 500 and "price" in body["message"], (status, body)

        records = json.loads(three.to_json(orient="records"))
        status, body = _post(f"{url}/invocations", {"dataframe_records": records})
        assert status == 200 and len(body["predictions"]) == 15, body
    finally:
        server.stop()
    _assert_stopped(server, port)


@pytest.mark.integration
def test_bettercat_serve_runs_mlflows_scoring_server(champion, tracking_settings, tmp_path):
    _, _, version, products = champion
    port = process_support.free_port()
    server = process_support.start_process(
        "bettercat serve",
        [Path(sys.executable).parent / "bettercat", "serve", "--client-id", CID, "--port", port],
        env={
            **_serve_env(tracking_settings),
            "BETTERCAT_CLIENTS_FILE": str(champion[0].path),
            "BETTERCAT_HOME": str(tmp_path / "home"),
        },
        log=tmp_path / "bettercat-serve.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process_support.wait_for_http(f"{url}/ping", 120, processes=[server])
        records = json.loads(products.head(2).to_json(orient="records"))
        status, body = _post(
            f"{url}/invocations",
            {"dataframe_records": records, "params": {"output": "per_product"}},
        )
        assert status == 200, body
        assert [p["product_id"] for p in body["predictions"]] == products["product_id"][:2].tolist()
        assert {len(p["pred_labels"]) for p in body["predictions"]} == {5}
        assert server.log_tail().count(f"(v{version}) on {url}/invocations") == 1
        # a 400 says what is wrong in one sentence: neither the input table nor the schema
        short = json.loads(products.head(2)[["product_id", "price"]].to_json(orient="records"))
        status, body = _post(f"{url}/invocations", {"dataframe_records": short})
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
        assert body["message"].startswith("Model is missing inputs ['weight_g'"), body
        assert "Failed to" not in body["message"] and "P-" not in body["message"], body
        # one process: the scoring server itself, with the downloaded model (no skops file)
        served = tmp_path / "home" / "serving" / MODEL
        assert list(served.rglob("MLmodel")) and not list(served.rglob("*.skops"))
    finally:
        server.stop()
    _assert_stopped(server, port)


@pytest.mark.integration
def test_serve_cli_errors(champion, tracking_settings):
    registry = champion[0]
    runner = CliRunner()
    args = ["serve", "--clients-file", str(registry.path)]
    result = runner.invoke(main_cli(), [*args, "--client-id", "nobody"])
    assert "unknown client 'nobody'" in assert_one_error_line(
        result.exit_code, result.stdout, result.stderr
    )
    with process_support.socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(main_cli(), [*args, "--client-id", CID, "--port", str(port)])
    line = assert_one_error_line(result.exit_code, result.stdout, result.stderr)
    assert line.startswith(f"error: client '{CID}': cannot serve on 127.0.0.1:{port}")


def main_cli():
    from bettercat_assets.cli import main

    return main


@pytest.mark.integration
def test_mlflow_cli_command_is_the_venvs_mlflow_on_the_champion(champion, tracking_settings):
    from bettercat_assets.core.serving import server as serving

    registry, _, version, _ = champion
    command = serving.mlflow_cli_command(tracking_settings, registry.get(CID), "127.0.0.1", 5999)
    assert command.argv[0] == str(Path(sys.executable).parent / "mlflow")
    assert command.argv[1:7] == [
        *("models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local")
    ]
    assert command.env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert command.version == version


@pytest.mark.integration
def test_spark_udf_on_the_champion(champion, spark):
    import mlflow
    from pyspark.sql import functions as F

    _, _, version, products = champion
    frame = spark.createDataFrame(products.head(40))
    udf = mlflow.pyfunc.spark_udf(
        spark,
        f"models:/{MODEL}@champion",
        result_type=(
            "struct<product_id: string, pred_labels: array<string>, "
            "pred_scores: array<float>, model_version: int>"
        ),
        params={"output": "per_product"},
        env_manager="local",
    )
    scored = frame.withColumn("top", udf(F.struct(*products.columns))).select("top.*")
    rows = scored.toPandas()
    assert sorted(rows["product_id"]) == sorted(products["product_id"].head(40))
    expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(products.head(40))
    by_product = {pid: g["pred_label"].tolist() for pid, g in expected.groupby("product_id")}
    assert {
        pid: list(v) for pid, v in zip(rows["product_id"], rows["pred_labels"], strict=True)
    } == by_product
    assert set(rows["model_version"]) == {version}

    # docs/serving.md: back to the batch layout with posexplode
    long = (
        scored.select(
            "product_id",
            "model_version",
            F.posexplode(F.arrays_zip("pred_labels", "pred_scores")).alias("rank", "pred"),
        )
        .select(
            "product_id",
            F.col("pred.pred_labels").alias("pred_label"),
            F.col("pred.pred_scores").alias("pred_score"),
            "rank",
            "model_version",
        )
        .toPandas()
    )
    merged = long.merge(expected, on=["product_id", "rank"], suffixes=("", "_pyfunc"))
    assert len(merged) == len(long) == len(expected)
    assert (merged["pred_label"] == merged["pred_label_pyfunc"]).all()
    assert np.abs(merged["pred_score"] - merged["pred_score_pyfunc"]).max() <= 1e-6


# --- versions registered before top-k serving ------------------------------------------------


@pytest.mark.integration
def test_versions_registered_before_serving_still_load(tracking_settings, tmp_path):
    """The old layout: one sklearn logged model, the compact form under `compact/`."""
    import mlflow
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient

    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.errors import ModelNotFoundError
    from bettercat_assets.core.serving import server as serving

    name = "legacy_shop_model"
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(120, 2)), columns=["price", "weight_g"])
    y = np.array([f"c{i % 4}" for i in range(120)])
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    compact = compact_from_sklearn(forest)
    mlflow.set_tracking_uri(tracking_settings.tracking_uri)
    experiment = mlflow.create_experiment(
        "bettercat/legacy_shop", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            forest,
            name="model",
            pip_requirements=model_store.PIP_REQUIREMENTS,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=model_store.SKOPS_TRUSTED_TYPES,
        )
        compact.save(tmp_path / "c")
        MlflowClient().log_model_artifacts(info.model_id, str(tmp_path / "c"), "compact")
    version = int(mlflow.register_model(info.model_uri, name).version)
    MlflowClient().set_registered_model_alias(name, "champion", str(version))

    assert not model_store.is_serving_layout(tracking_settings, name, version)
    assert model_store.compact_artifact_uri(tracking_settings, name, version) == (
        model_store.model_artifact_uri(tracking_settings, name, version) + "/compact"
    )
    loaded = model_store.load_compact(tracking_settings, name, version)
    np.testing.assert_allclose(loaded.predict_proba(X), forest.predict_proba(X), atol=1e-6)
    local = model_store.download_compact(tracking_settings, name, version, str(tmp_path / "d"))
    assert CompactForest.load(local).n_trees == 4
    sk = model_store.load_sklearn(tracking_settings, name, version)
    assert (sk.predict(X) == forest.predict(X)).all()

    clients = write_clients_file(
        tmp_path / "clients.yaml", ["{client_id: legacy_shop, features: [price, weight_g]}"]
    )
    with pytest.raises(ModelNotFoundError, match="registered before top-k serving"):
        serving.servable_champion(tracking_settings, load_clients(clients).get("legacy_shop"))


def test_useful_message_is_the_innermost_error():
    from bettercat_assets.core.serving.errors import useful_message

    table = "   product_id  price\n0  P-1  3.79\n1  P-2  1.0"
    wrapped = (
        f"Failed to predict data '{table}'. \nError: Failed to enforce schema of data "
        f"'{table}' with schema '['product_id': string (required), 'price': double "
        "(required), 'weight_g': double (required)]'. Error: Model is missing inputs "
        "['weight_g']."
    )
    assert useful_message(wrapped) == "Model is missing inputs ['weight_g']."
    ours = f"Failed to predict data '{table}'. \nError: column 'price' must be numeric"
    assert useful_message(ours) == "column 'price' must be numeric"
    assert useful_message("plain message") == "plain message"
    conversion = (
        "Invalid input. Data is not compatible with model signature. Failed to convert column "
        "price to type 'float64'. Error: 'ValueError(\"could not convert string to float\")'"
    )
    assert useful_message(f"Failed to predict data '{table}'. \nError: {conversion}") == conversion
