"""A model registered before the text/categorical profiles and the per-bin top-5 rates still
scores through the real path.

A tiny client with numeric, text and categorical features is trained and registered; its
`reference_profile.json` in the registry is then rewritten in the form the earlier code stored:
numeric features only (name, kind, edges, counts) and predictions without mass bins, hit
rates or category shares, with the checksum of that body. The `category_predictions` asset
and `bettercat predict` score it with every monitoring check present: only the numeric
features are judged, and the top-5 estimate is the mean top-5 mass plus the test split's gap.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
import pytest

from bettercat_assets.core.monitoring.reference import PROFILE_FILE, ReferenceProfile
from bettercat_assets.core.monitoring.signals import MONITORING_CHECKS, MONITORING_FILE
from bettercat_assets_tests.dagster_support import checks_by_name, materialize_clients, metadata
from bettercat_assets_tests.reliability_support import write_clients_file
from bettercat_assets_tests.workspace_support import cli_predict

pytestmark = pytest.mark.integration

CID = "old_profile_shop"
DAY = date(2026, 8, 3)
FEATURES = "[price, weight_g, {name: title, kind: text}, {name: brand, kind: categorical}]"
ENTRY = (
    f"{{client_id: {CID}, features: {FEATURES}, "
    "sample_data: {products: 400, categories: 6, noise: 0.2}}"
)
NUMERIC = ("price", "weight_g")
#: What the earlier code wrote per feature and about the predictions.
OLD_FEATURE_KEYS = ("name", "kind", "edges", "counts")
OLD_PREDICTION_KEYS = (
    "rows",
    "classes",
    "top1_counts",
    "score_edges",
    "score_counts",
    "mass_mean",
    "mass_var",
    "top5_accuracy",
)


def _old_form(document: dict) -> str:
    """The profile document as the earlier code stored it (checksum over its canonical body)."""
    body = document["body"]
    old = {
        "format": body["format"],
        "bins": body["bins"],
        "features": [
            {k: f[k] for k in OLD_FEATURE_KEYS} for f in body["features"] if f["kind"] == "numeric"
        ],
        "predictions": {k: body["predictions"][k] for k in OLD_PREDICTION_KEYS},
    }
    canonical = json.dumps(old, sort_keys=True, separators=(",", ":"), allow_nan=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return json.dumps({"body": old, "body_sha256": digest}) + "\n"


@pytest.fixture(scope="module")
def old_model(tmp_path_factory, tracking_settings):
    """(registry, layout, the old-form profile as loaded) of a registered version."""
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.model import store as model_store
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("old_profile")
    registry = load_clients(write_clients_file(root / "clients.yaml", [ENTRY]))
    layout = DataLayout(root / "data")
    client = registry.get(CID)
    generate_client_data(client, layout, seed=13)
    result = train_model(client, DAY, layout=layout, settings=tracking_settings)
    uri = model_store.compact_artifact_uri(tracking_settings, client.model_name, result.version)
    path = Path(urlparse(uri).path) / PROFILE_FILE
    current = json.loads(path.read_text(encoding="utf-8"))
    assert {f["kind"] for f in current["body"]["features"]} > {"numeric"}  # text kinds too
    path.write_text(_old_form(current), encoding="utf-8")
    model_store._CACHE.clear()
    return registry, layout, ReferenceProfile.load(path)


def _mean_top5_mass(folder: Path) -> float:
    rows = pd.read_parquet(folder, columns=["product_id", "pred_score"])
    return float(rows.groupby("product_id")["pred_score"].sum().mean())


def test_the_asset_scores_an_old_profile_with_every_monitoring_check(old_model, spark):
    from bettercat_assets.resources import ClientsResource, MlflowResource, SparkResource
    from bettercat_assets_tests.conftest import SESSION_ENV

    registry, layout, profile = old_model
    assert profile.feature_names == NUMERIC and not profile.predictions.mass_rates
    resources = {
        "clients": ClientsResource(clients_file=str(registry.path), data_prefix=str(layout.prefix)),
        "mlflow": MlflowResource(
            tracking_uri=SESSION_ENV["MLFLOW_TRACKING_URI"],
            artifact_root=SESSION_ENV["BETTERCAT_ARTIFACT_ROOT"],
        ),
        "spark": SparkResource(master="local[2]"),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_clients(
        ["category_predictions"],
        CID,
        instance,
        resources=resources,
        clients_file=registry.path,
        day=DAY.isoformat(),
    )
    assert result.success
    checks = checks_by_name(result, CID, "category_predictions")
    assert set(MONITORING_CHECKS) <= set(checks)
    for name in MONITORING_CHECKS:  # a clean batch of the same catalogue: nothing warns
        assert checks[name].severity == dg.AssetCheckSeverity.WARN
        assert checks[name].passed, checks[name].description
    assert set(checks["input_drift"].metadata["psi"].value) == set(NUMERIC)

    numbers = metadata(instance, "category_predictions", CID)
    assert {k for k in numbers if k.startswith("psi_")} == {f"psi_{n}" for n in NUMERIC}
    scored = layout.predictions_dir(CID, DAY)
    expected = _mean_top5_mass(scored) + profile.predictions.gap
    assert numbers["monitor_estimated_top5"] == pytest.approx(expected, abs=2e-3)
    assert checks["estimated_accuracy"].metadata["estimated_top5"].value == pytest.approx(
        expected, abs=2e-3
    )


def test_bettercat_predict_scores_an_old_profile(old_model, spark):

    registry, layout, _ = old_model
    day = date(2026, 8, 4)
    result = cli_predict(registry, layout, CID, day)
    assert result.exit_code == 0, result.output
    scored = layout.predictions_dir(CID, day)
    summary = json.loads((scored / MONITORING_FILE).read_text())
    numbers = summary["numbers"]
    assert {k for k in numbers if k.startswith("psi_")} == {f"psi_{n}" for n in NUMERIC}
    products = pd.read_parquet(scored, columns=["product_id"])["product_id"].nunique()
    assert numbers["monitor_products"] == products > 0
