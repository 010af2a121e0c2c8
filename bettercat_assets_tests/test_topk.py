"""Top-k selection against a brute-force reference, plus the quality gate and top-k accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from bettercat_assets.core.config.clients import QualityGate
from bettercat_assets.core.model.topk import top_k_frame, top_k_indices
from bettercat_assets.core.training.evaluation import GATE_METRIC, top_k_accuracy
from bettercat_assets.core.training.gate import quality_gate


def reference(proba: np.ndarray, k: int) -> np.ndarray:
    """Full stable sort: descending score, ties to the lower class index."""
    return np.argsort(-proba, axis=1, kind="stable")[:, : min(k, proba.shape[1])]


def tied_matrix(rng: np.random.Generator, rows: int, classes: int) -> np.ndarray:
    """Values on a 0.1 grid, most cells zero: ties everywhere, including across the k-th place."""
    proba = rng.random((rows, classes)).round(1)
    proba[rng.random((rows, classes)) < 0.6] = 0.0
    proba[: rows // 10] = 0.0  # some all-zero rows
    proba[rows // 10 : rows // 5] = 0.5  # some constant rows
    return proba


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_matches_reference_on_continuous_scores(seed, k):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(9), size=200)
    np.testing.assert_array_equal(top_k_indices(proba, k), reference(proba, k))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 3, 5, 11])
def test_matches_reference_with_many_ties(seed, k):
    rng = np.random.default_rng(100 + seed)
    proba = tied_matrix(rng, 300, 12)
    got = top_k_indices(proba, k)
    assert got.shape == (300, k)
    np.testing.assert_array_equal(got, reference(proba, k))


def test_tie_straddling_the_cut_goes_to_lower_class_index():
    proba = np.array(
        [
            [0.1, 0.3, 0.3, 0.3, 0.0],  # three-way tie for 2 places
            [0.2, 0.2, 0.2, 0.2, 0.2],  # all equal
            [0.0, 0.0, 0.0, 0.0, 1.0],  # zeros tie for 2nd place
            [0.4, 0.1, 0.4, 0.1, 0.0],
        ]
    )
    np.testing.assert_array_equal(top_k_indices(proba, 2), [[1, 2], [0, 1], [4, 0], [0, 2]])


@pytest.mark.parametrize("k", [4, 5, 50])
def test_k_at_least_n_classes_returns_all_classes(k):
    rng = np.random.default_rng(7)
    proba = tied_matrix(rng, 40, 4)
    got = top_k_indices(proba, k)
    assert got.shape == (40, 4)
    np.testing.assert_array_equal(np.sort(got, axis=1), np.tile(np.arange(4), (40, 1)))
    np.testing.assert_array_equal(got, reference(proba, k))


def test_single_class_and_single_row():
    np.testing.assert_array_equal(top_k_indices(np.array([[1.0], [0.0]]), 5), [[0], [0]])
    np.testing.assert_array_equal(top_k_indices(np.array([[0.1, 0.7, 0.2]]), 2), [[1, 2]])


def test_top_k_frame_layout_and_values():
    rng = np.random.default_rng(3)
    proba = tied_matrix(rng, 30, 6)
    proba[0] = [0.05, 0.4, 0.1, 0.4, 0.05, 0.0]
    classes = np.array(["c0", "c1, comma", "c2", "Ünï", "c4", "NA"])
    product_ids = np.array([f"p{i}" for i in range(30)], dtype=object)
    k = 3
    frame = top_k_frame(product_ids, proba, classes, k, model_version=17)

    assert list(frame.columns) == [
        "product_id",
        "pred_label",
        "pred_score",
        "rank",
        "model_version",
    ]
    assert len(frame) == 30 * k
    assert frame["product_id"].tolist() == [p for p in product_ids for _ in range(k)]
    assert frame["rank"].tolist() == list(range(k)) * 30
    assert frame["rank"].dtype == np.int32
    assert set(frame["model_version"]) == {17}
    assert frame["model_version"].dtype == np.int32
    assert frame["pred_score"].dtype == np.float32

    expected = reference(proba, k)
    np.testing.assert_array_equal(frame["pred_label"].to_numpy().reshape(30, k), classes[expected])
    scores = frame["pred_score"].to_numpy().reshape(30, k)
    np.testing.assert_allclose(scores, np.take_along_axis(proba, expected, axis=1), rtol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert frame.iloc[:3]["pred_label"].tolist() == ["c1, comma", "Ünï", "c2"]


def test_top_k_frame_k_larger_than_classes():
    proba = np.array([[0.2, 0.8], [0.6, 0.4]])
    frame = top_k_frame(np.array(["a", "b"]), proba, np.array(["x", "y"]), 5, model_version=1)
    assert frame["product_id"].tolist() == ["a", "a", "b", "b"]
    assert frame["pred_label"].tolist() == ["y", "x", "x", "y"]
    assert frame["rank"].tolist() == [0, 1, 0, 1]


# --- top-k accuracy --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_matches_sklearn(k):
    rng = np.random.default_rng(11)
    classes = np.array([f"cat{i:02d}" for i in range(10)])
    proba = rng.dirichlet(np.ones(10), size=500)  # continuous: no ties, so tie rules don't matter
    y_true = classes[rng.integers(0, 10, size=500)]
    expected = top_k_accuracy_score(y_true, proba, k=k, labels=classes)
    assert top_k_accuracy(y_true, proba, classes, k) == pytest.approx(expected)
    assert 0.0 < expected < 1.0


def test_top_k_accuracy_simple_case():
    classes = np.array(["a", "b", "c"])
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
    y_true = np.array(["a", "a", "c"])
    assert top_k_accuracy(y_true, proba, classes, 1) == pytest.approx(1 / 3)
    # Row 3: "a" and "c" tie for 2nd place; the lower class index ("a") wins, so "c" misses.
    assert top_k_accuracy(y_true, proba, classes, 2) == pytest.approx(1 / 3)
    assert top_k_accuracy(y_true, proba, classes, 3) == pytest.approx(1.0)


# --- quality gate ---------------------------------------------------------------------------------


def test_gate_passes_without_champion():
    result = quality_gate(0.5, QualityGate(min_top5_accuracy=0.25, max_top5_regression=0.125))
    assert result.passed
    assert result.metric == GATE_METRIC
    assert (result.value, result.floor, result.tolerance) == (0.5, 0.25, 0.125)
    assert result.champion_version is None
    assert "meets the floor 0.2500" in result.reason


def test_gate_fails_below_floor():
    result = quality_gate(0.25, QualityGate(min_top5_accuracy=0.5))
    assert not result.passed
    assert GATE_METRIC in result.reason
    assert "0.2500" in result.reason and "0.5000" in result.reason
    assert "below the floor" in result.reason


def test_gate_fails_on_regression_beyond_tolerance():
    gate = QualityGate(min_top5_accuracy=0.25, max_top5_regression=0.125)
    result = quality_gate(0.5, gate, champion_version=3, champion_value=0.75)
    assert not result.passed
    assert GATE_METRIC in result.reason
    assert "0.5000" in result.reason and "0.7500" in result.reason
    assert "v3" in result.reason
    assert "below the floor" not in result.reason
    assert (result.champion_version, result.champion_value) == (3, 0.75)


@pytest.mark.parametrize("value", [0.625, 0.7, 0.75, 0.9])
def test_gate_passes_within_tolerance_of_champion(value):
    gate = QualityGate(min_top5_accuracy=0.25, max_top5_regression=0.125)
    result = quality_gate(value, gate, champion_version=3, champion_value=0.75)
    assert result.passed, result.reason
    assert "within 0.1250 of champion v3's 0.7500" in result.reason


def test_gate_reports_both_problems():
    gate = QualityGate(min_top5_accuracy=0.5, max_top5_regression=0.0)
    result = quality_gate(0.25, gate, champion_version=1, champion_value=0.75)
    assert not result.passed
    assert "below the floor 0.5000" in result.reason
    assert "champion v1's 0.7500" in result.reason
    assert "; " in result.reason
