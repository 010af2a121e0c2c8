"""Tenant isolation: a run for client A reads only A's paths and loads only `A_model`, and
clients' experiments, registered models, artifacts and parquet folders never mix."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.dataset as ds
import pytest

from bettercat_assets.core.config.errors import BettercatError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets_tests.reliability_support import write_clients_file

DAY = date(2026, 4, 1)
A, B = "iso_a", "iso_b"

CRAFTED_IDS = [
    "../../etc",
    "..",
    ".",
    "",
    "a/b",
    "a\\b",
    f"{A}/../{B}",
    f"{A}/..",
    "/etc",
    "a\x00b",
    "a\nb",
    "a b",
    "ünï",
    "x" * 65,
    "~root",
    "$HOME",
    "a*",
]


# --- DataLayout confinement ------------------------------------------------------------------


@pytest.mark.parametrize("crafted", CRAFTED_IDS, ids=repr)
def test_layout_refuses_crafted_ids(tmp_path, crafted):
    layout = DataLayout(tmp_path)
    for method in (layout.train_file, layout.predict_file, layout.predictions_root):
        with pytest.raises(BettercatError, match="not a safe identifier"):
            method(crafted)
    with pytest.raises(BettercatError):
        layout.predictions_dir(crafted, DAY)


def test_layout_paths_stay_in_the_clients_own_folders(tmp_path):
    layout = DataLayout(tmp_path / "x" / ".." / "data")  # resolved on construction
    prefix = (tmp_path / "data").resolve()
    assert layout.prefix == prefix
    assert layout.train_file(A) == prefix / "train" / f"client_id={A}" / "data_train.csv.gz"
    assert (
        layout.predict_file(A) == prefix / "prediction" / f"client_id={A}" / "data_predict.csv.gz"
    )
    assert layout.predictions_dir(A, DAY) == (
        prefix / "products_categories" / f"client_id={A}" / "date=2026-04-01"
    )
    # Distinct ids never share a folder, and no id's folder contains another's.
    folders = {layout.predictions_root(c) for c in (A, B, f"{A}_x", "a", "A")}
    assert len(folders) == 5
    assert not any(f != g and f in g.parents for f in folders for g in folders)


def test_data_prefix_from_env_is_resolved(tmp_path, monkeypatch):
    from bettercat_assets.core.config.settings import default_data_prefix

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_PREFIX", "relative/../data")
    assert default_data_prefix() == (tmp_path / "data").resolve()
    monkeypatch.setenv("DATA_PREFIX", "")
    assert default_data_prefix() == (tmp_path / "data").resolve()


def test_symlink_out_of_the_prefix_is_refused(tmp_path):
    layout = DataLayout(tmp_path / "data")
    (layout.prefix / "train").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (layout.prefix / "train" / f"client_id={A}").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BettercatError, match="escapes"):
        layout.train_file(A)


def test_symlink_to_another_clients_folder_is_refused(tmp_path):
    layout = DataLayout(tmp_path / "data")
    train = layout.prefix / "train"
    (train / f"client_id={B}").mkdir(parents=True)
    (train / f"client_id={A}").symlink_to(train / f"client_id={B}", target_is_directory=True)
    with pytest.raises(BettercatError, match=f"client '{A}': .* escapes to .*client_id={B}"):
        layout.train_file(A)


# --- two trained clients side by side --------------------------------------------------------


@pytest.fixture(scope="module")
def two_clients(tmp_path_factory, tracking_settings):
    """A (one version) and B (two) with different features, in the session MLflow store."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("isolation")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {A}, features: [price, weight_g], "
            "sample_data: {products: 300, categories: 5, noise: 0.2}}",
            f"{{client_id: {B}, features: [price, rating, n_reviews], "
            "sample_data: {products: 300, categories: 4, noise: 0.2}}",
        ],
    )
    registry = load_clients(clients_file)
    layout = DataLayout(root / "data")
    for cid in (A, B):
        generate_client_data(registry.get(cid), layout, seed=31)
    results = {
        A: [train_model(registry.get(A), DAY, layout=layout, settings=tracking_settings)],
        B: [train_model(registry.get(B), DAY, layout=layout, settings=tracking_settings)],
    }
    results[B].append(train_model(registry.get(B), DAY, layout=layout, settings=tracking_settings))
    return registry, layout, results


def _local(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file:") else Path(uri)


@pytest.mark.integration
def test_experiments_models_and_artifacts_never_mix(two_clients, mlflow_client, tracking_settings):
    registry, _, results = two_clients
    artifact_root = _local(tracking_settings.artifact_root)
    for cid in (A, B):
        cfg = registry.get(cid)
        experiment = mlflow_client.get_experiment_by_name(cfg.experiment_name)
        assert experiment.tags["client_id"] == cid
        assert _local(experiment.artifact_location) == artifact_root / cid
        runs = mlflow_client.search_runs([experiment.experiment_id])
        assert {r.info.run_id for r in runs} == {r.run_id for r in results[cid]}
        for run in runs:
            assert run.data.tags["client_id"] == cid
            assert artifact_root / cid in _local(run.info.artifact_uri).parents
        run_ids = {r.info.run_id for r in runs}
        versions = mlflow_client.search_model_versions(f"name = '{cfg.model_name}'")
        assert sorted(int(v.version) for v in versions) == [r.version for r in results[cid]]
        for version in versions:
            assert version.run_id in run_ids
            assert version.tags["run_id"] == version.run_id
            model_id = version.model_id or version.source.removeprefix("models:/").split("/")[0]
            logged = mlflow_client.get_logged_model(model_id)
            assert logged.source_run_id == version.run_id
            assert logged.experiment_id == experiment.experiment_id
            assert artifact_root / cid in _local(logged.artifact_location).parents
    # On disk, each client's artifacts sit in its own folder and nowhere else.
    for cid in (A, B):
        other = B if cid == A else A
        files = [p for p in (artifact_root / cid).rglob("*") if p.is_file()]
        assert any(p.name == "model.skops" for p in files)
        texts = [p for p in files if p.suffix in {".json", ".yaml", ".csv", ".txt", ""}]
        assert texts
        assert not any(other in p.read_text(errors="ignore") for p in texts)


@pytest.mark.integration
def test_predict_for_a_never_loads_bs_model(two_clients, spark, tracking_settings, monkeypatch):
    import json

    from bettercat_assets.core.config.errors import ModelNotFoundError
    from bettercat_assets.core.model import store as model_store
    from bettercat_assets.core.model.compact_forest import ARRAYS_FILE
    from bettercat_assets.core.scoring.spark_pass import LINEAGE_FILE, predict_categories

    registry, layout, results = two_clients
    cfg_a = registry.get(A)

    # B's inputs and B's compact model are made unusable: anything of B's that A's run touched
    # would fail it.
    for path in (layout.train_file(B), layout.predict_file(B)):
        path.write_bytes(b"not for client A")
    for version in (1, 2):
        b_model = model_store.model_artifact_uri(tracking_settings, f"{B}_model", version)
        (_local(b_model) / model_store.COMPACT_ARTIFACT_PATH / ARRAYS_FILE).write_bytes(b"junk")

    loaded: list[str] = []
    real_download = model_store._download_model_artifact

    def spy(settings, model_name, version, sub, dst):
        loaded.append(model_name)
        return real_download(settings, model_name, version, sub, dst)

    monkeypatch.setattr(model_store, "_download_model_artifact", spy)
    model_store._CACHE.clear()
    result = predict_categories(cfg_a, DAY, spark=spark, layout=layout, settings=tracking_settings)
    assert loaded and set(loaded) == {f"{A}_model"}, loaded
    assert result.model_version == results[A][-1].version
    assert result.output_dir.parent == layout.predictions_root(A)

    table = ds.dataset(result.output_dir, format="parquet").to_table().to_pandas()
    assert table["product_id"].str.startswith(f"P-{A}-").all()
    assert set(table["model_version"]) == {result.model_version}
    lineage = json.loads((result.output_dir / LINEAGE_FILE).read_text())
    assert lineage["client_id"] == A and lineage["model_name"] == f"{A}_model"
    assert lineage["model_run_id"] == results[A][-1].run_id
    assert sorted(p.name for p in (layout.prefix / "products_categories").iterdir()) == [
        f"client_id={A}"
    ]

    # A version number that exists only for B is still looked up in A's model.
    with pytest.raises(ModelNotFoundError, match=f"'{A}_model' has no version 2"):
        predict_categories(
            cfg_a, DAY, spark=spark, layout=layout, settings=tracking_settings, version=2
        )
    assert set(loaded) == {f"{A}_model"}
