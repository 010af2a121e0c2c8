"""Monitoring's numbers: false alarms on clean batches, label-free top-5, the profile file,
and the `monitoring` block of clients.yaml."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bettercat_assets.core.config.monitoring import Monitoring
from bettercat_assets.core.monitoring.drift import compare
from bettercat_assets.core.monitoring.reference import ReferenceProfile, build_reference
from bettercat_assets.core.monitoring.statistic import MonitorSpec, count_slice, merge_states
from bettercat_assets_tests.monitoring_support import Catalogue


def _reference(cat: Catalogue, rng, train: int = 6000, test: int = 2000) -> ReferenceProfile:
    x_train, _, _ = cat.batch(train, rng)
    x_test, y_test, z_test = cat.batch(test, rng)
    features = {n: np.concatenate([x_train[:, j], x_test[:, j]]) for j, n in enumerate(cat.names)}
    return build_reference(features, cat.posterior(z_test), cat.classes, cat.classes[y_test], 10)


def _judge(profile, x, proba, settings=Monitoring()):
    state = count_slice(MonitorSpec.of(profile), x.astype(np.float32), proba)
    return compare(profile, state, settings)


def _alarms(report) -> bool:
    return bool(report.drifted_features or report.prediction_drifted or report.accuracy_dropped)


@pytest.mark.parametrize("products", [300, 100_000])
def test_twenty_clean_batches_give_at_most_one_false_alarm(products):
    cat = Catalogue(seed=1)
    rng = np.random.default_rng(2)
    profile = _reference(cat, rng)
    alarms = 0
    for _ in range(20):
        x, _, z = cat.batch(products, rng)
        alarms += _alarms(_judge(profile, x, cat.posterior(z)))
    assert alarms <= 1


@pytest.mark.parametrize("products", [300, 100_000])
def test_one_shifted_feature_is_named_and_only_it(products):
    cat = Catalogue(seed=3)
    rng = np.random.default_rng(4)
    profile = _reference(cat, rng)
    x, _, z = cat.batch(products, rng)
    x[:, 1] += 0.75  # a shift of three quarters of the feature's spread within a category
    report = _judge(profile, x, cat.posterior(z))
    assert report.drifted_features == ["x1"]


def test_counts_add_up_across_slices():
    cat = Catalogue(seed=5)
    rng = np.random.default_rng(6)
    profile = _reference(cat, rng)
    spec = MonitorSpec.of(profile)
    x, _, z = cat.batch(1000, rng)
    p = cat.posterior(z)
    whole = count_slice(spec, x, p)
    parts = merge_states(
        [count_slice(spec, x[:300], p[:300]), {}, count_slice(spec, x[300:], p[300:])]
    )
    for key, value in whole.items():
        np.testing.assert_allclose(parts[key], value)


@pytest.mark.parametrize("k", [3, 5, 8])
def test_counts_from_the_scorers_ranking_equal_a_fresh_ranking(k):
    from bettercat_assets.core.model.topk import top_k_indices

    cat = Catalogue(seed=7)
    rng = np.random.default_rng(8)
    spec = MonitorSpec.of(_reference(cat, rng))
    x, _, z = cat.batch(2000, rng)
    p = cat.posterior(z) + rng.random((2000, len(cat.classes))) * 1e-9  # no ties
    fresh = count_slice(spec, x, p)
    reused = count_slice(spec, x, p, ranked=top_k_indices(p, k))
    for key, value in fresh.items():
        np.testing.assert_allclose(reused[key], value, err_msg=key)


def test_profile_round_trips_and_refuses_an_edited_file(tmp_path):
    cat = Catalogue(seed=7)
    profile = _reference(cat, np.random.default_rng(8), train=500, test=200)
    path = profile.save(tmp_path)
    assert ReferenceProfile.load(path) == profile
    document = json.loads(path.read_text())
    document["body"]["features"][0]["counts"][0] += 1
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="checksum"):
        ReferenceProfile.load(path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, registry):
    """A generated client's catalogue, clean and with a weaker link from features to labels."""
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.data.loading import load_training_table

    client = registry.clients["alpha"]
    tables = {}
    for noise in (1.0, 2.0):
        cfg = client.model_copy(
            update={"sample_data": client.sample_data.model_copy(update={"noise": noise})}
        )
        layout = DataLayout(tmp_path_factory.mktemp(f"noise-{noise}"))
        generate_client_data(cfg, layout, seed=9, products=15000, categories=20)
        tables[noise] = load_training_table(cfg, layout.train_file(cfg.client_id))
    return client, tables


def _estimate_and_actual(forest, profile, table, rows):
    x = table.features.iloc[rows].to_numpy(dtype=np.float64)
    proba = forest.predict_proba(table.features.iloc[rows])
    y = table.labels.iloc[rows].to_numpy()
    best = np.argsort(-proba, axis=1)[:, :5]
    actual = float((forest.classes_[best] == y[:, None]).any(axis=1).mean())
    return _judge(profile, x, proba), actual


def test_estimated_top5_tracks_the_actual_on_a_clean_held_out_batch(generated):
    from sklearn.ensemble import RandomForestClassifier

    _, tables = generated
    clean = tables[1.0]
    order = np.random.default_rng(0).permutation(clean.rows)
    fit, test, held_out = order[:6000], order[6000:9000], order[9000:]
    forest = RandomForestClassifier(n_estimators=60, min_samples_leaf=5, random_state=0, n_jobs=1)
    forest.fit(clean.features.iloc[fit], clean.labels.iloc[fit])
    profile = build_reference(
        {n: clean.features[n].to_numpy() for n in clean.features.columns},
        forest.predict_proba(clean.features.iloc[test]),
        forest.classes_,
        clean.labels.iloc[test].to_numpy(),
        10,
    )
    report, actual = _estimate_and_actual(forest, profile, clean, held_out)
    assert abs(report.estimated_top5 - actual) <= 0.03
    assert not _alarms(report)
    # A weaker relation between features and labels (noisier catalogue): the real top-5
    # falls, and so does the estimate, though the forest's top-5 mass rises there.
    noisy, noisy_actual = _estimate_and_actual(forest, profile, tables[2.0], held_out)
    assert noisy_actual < actual - 0.05
    assert noisy.drifted_features and noisy.accuracy_dropped
    assert noisy.estimated_top5 < report.estimated_top5 - 0.04


@pytest.mark.parametrize("products", [300, 100_000])
@pytest.mark.parametrize("change", ["noisier", "centres redrawn"])
def test_estimated_top5_falls_when_the_labels_relation_to_the_features_changes(change, products):
    cat = Catalogue(seed=11)
    rng = np.random.default_rng(12)
    profile = _reference(cat, rng)
    if change == "noisier":
        x, labels, z = cat.batch(products, rng, noise=2.0)
    else:  # the same categories, each now around a new centre
        labels, z = Catalogue(seed=99).latent(products, rng)
        x = cat.shape(z, rng)
    proba = cat.posterior(z)  # the model of the old relation
    best = np.argsort(-proba, axis=1)[:, :5]
    actual = float((best == labels[:, None]).any(axis=1).mean())
    report = _judge(profile, x, proba)
    assert actual < profile.predictions.top5_accuracy - 0.1
    assert report.accuracy_dropped
    assert report.estimated_top5 < profile.predictions.top5_accuracy - 0.05


def test_monitoring_settings_are_validated_per_client(tmp_path):
    from bettercat_assets.core.config.clients import load_clients

    path = tmp_path / "clients.yaml"
    path.write_text(
        "defaults: {monitoring: {bins: 12, min_psi: 0.1}}\n"
        "clients:\n"
        "  - {client_id: a, features: [price], monitoring: {retrain_on_drift: true}}\n"
        "  - {client_id: b, features: [price], monitoring: {binz: 3}}\n"
        "  - {client_id: c, features: [price], monitoring: {false_alarm_rate: 2}}\n"
    )
    registry = load_clients(path)
    a = registry.get("a").monitoring
    assert (a.bins, a.min_psi, a.retrain_on_drift) == (12, 0.1, True)
    problems = "\n".join(registry.problems)
    assert "client 'b': monitoring.binz" in problems and "did you mean 'bins'" in problems
    assert "client 'c': monitoring.false_alarm_rate" in problems
