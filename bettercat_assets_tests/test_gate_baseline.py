"""The quality gate's class-prior baseline rule: a model that learned nothing never passes, even
when the champion, re-scored on the same broken test split, collapses too."""

from __future__ import annotations

import numpy as np
import pytest

from bettercat_assets.core.config.clients import QualityGate
from bettercat_assets.core.training.evaluation import (
    BASELINE_METRIC,
    GATE_METRIC,
    evaluate,
    prior_top_k_accuracy,
)
from bettercat_assets.core.training.gate import quality_gate

GATE = QualityGate(min_top5_accuracy=0.3, max_top5_regression=0.02)


def test_prior_baseline_is_the_share_of_the_k_most_frequent_training_classes():
    y_train = np.array(list("aaaabbbccd") + list("efg"))  # a:4 b:3 c:2, then d..g once each
    y_test = np.array(list("abcdefgh"))
    # top-5 by training frequency: a, b, c, then the ties d and e (by label)
    assert prior_top_k_accuracy(y_train, y_test, 5) == pytest.approx(5 / 8)
    assert prior_top_k_accuracy(y_train, y_test, 1) == pytest.approx(1 / 8)
    assert np.isnan(prior_top_k_accuracy(y_train, np.array([]), 5))


def test_evaluate_adds_the_baseline_only_with_training_labels():
    classes = np.array(["a", "b"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    y = np.array(["a", "b"])
    assert BASELINE_METRIC not in evaluate(y, proba, classes)
    assert evaluate(y, proba, classes, y_train=np.array(["a", "a", "b"]))[BASELINE_METRIC] == 1.0


def test_learned_nothing_fails_although_the_champion_collapsed_too():
    """The degraded-retrain numbers: shuffled labels, new 0.6696 vs champion 0.5357 on the
    same (shuffled) split: within tolerance of the champion, but no better than the prior."""
    without = quality_gate(0.6696, GATE, champion_version=1, champion_value=0.5357)
    assert without.passed, "the champion comparison alone cannot see broken labels"
    result = quality_gate(
        0.6696, GATE, champion_version=1, champion_value=0.5357, baseline_value=0.7232
    )
    assert not result.passed
    assert result.baseline_value == 0.7232
    text = result.reason
    assert GATE_METRIC in text and "0.6696" in text and "0.7232" in text
    assert "champion v1: 0.5357 on the same test split" in text


def test_equal_to_the_baseline_fails_and_above_it_passes():
    assert not quality_gate(0.875, GATE, baseline_value=0.875).passed
    result = quality_gate(0.906, GATE, champion_version=2, champion_value=0.9, baseline_value=0.875)
    assert result.passed
    assert result.reason == (
        "top5_accuracy 0.9060 meets the floor 0.3000, beats the class-prior baseline 0.8750 "
        "and is within 0.0200 of champion v2's 0.9000 on the same test split"
    )


@pytest.mark.parametrize("baseline", [1.0, float("nan"), None])
def test_no_headroom_or_no_baseline_skips_the_rule(baseline):
    """With <= 5 categories top-5 accuracy is 1.0 for every model: the rule cannot apply."""
    result = quality_gate(
        1.0, GATE, champion_version=1, champion_value=1.0, baseline_value=baseline
    )
    assert result.passed
    assert result.baseline_value is None
    assert "baseline" not in result.reason


def test_failing_the_floor_still_names_the_champion_value():
    result = quality_gate(0.2, GATE, champion_version=4, champion_value=0.21, baseline_value=0.1)
    assert not result.passed
    assert "below the floor 0.3000" in result.reason
    assert "champion v4: 0.2100" in result.reason and "0.2000" in result.reason


def test_regression_and_baseline_failures_are_both_listed():
    result = quality_gate(0.5, GATE, champion_version=3, champion_value=0.8, baseline_value=0.6)
    assert not result.passed
    assert "does not beat the class-prior baseline 0.6000" in result.reason
    assert "worse than champion v3's 0.8000" in result.reason
    assert result.reason.count("champion v3") == 1


def test_the_margin_is_configurable_and_null_turns_the_rule_off():
    strict = QualityGate(min_top5_accuracy=0.3, min_lift_over_prior=0.05)
    result = quality_gate(0.9, strict, baseline_value=0.87)
    assert not result.passed
    assert "does not beat the class-prior baseline 0.8700 by more than 0.0500" in result.reason
    assert quality_gate(0.93, strict, baseline_value=0.87).passed
    off = QualityGate(min_top5_accuracy=0.0, max_top5_regression=1.0, min_lift_over_prior=None)
    result = quality_gate(0.5, off, champion_version=1, champion_value=0.9, baseline_value=0.7)
    assert result.passed and result.baseline_value is None


def test_clients_yaml_accepts_the_margin(tmp_path):
    from bettercat_assets.core.config.clients import load_clients

    path = tmp_path / "clients.yaml"
    path.write_text(
        "clients:\n"
        "  - client_id: a\n"
        "    features: [price]\n"
        "    quality_gate: {min_lift_over_prior: null}\n"
        "  - client_id: b\n"
        "    features: [price]\n",
        encoding="utf-8",
    )
    registry = load_clients(path)
    assert registry.get("a").quality_gate.min_lift_over_prior is None
    assert registry.get("b").quality_gate.min_lift_over_prior == 0.0


def test_at_most_five_categories_are_judged_on_accuracy():
    from bettercat_assets.core.training.gate import TOP5, gate_metric

    assert gate_metric(6) is TOP5
    for n in (2, 3, 5):
        metric = gate_metric(n)
        assert (metric.name, metric.baseline) == ("accuracy", "prior_accuracy")
        assert not metric.has_floor and metric.tests_chance
        assert f"with {n} categories top5_accuracy is 1.0" in metric.note


def test_accuracy_must_beat_the_most_frequent_category_beyond_chance():
    from bettercat_assets.core.training.gate import binomial_p_value, gate_metric

    five = gate_metric(5)
    # 0.46 vs 0.40 on 50 rows: 23 hits where 20 are expected, a lift chance gives often
    lucky = quality_gate(0.46, GATE, baseline_value=0.40, metric=five, test_rows=50)
    assert not lucky.passed and lucky.p_value == pytest.approx(binomial_p_value(0.46, 0.4, 50))
    assert lucky.p_value > 0.2
    assert "does not beat the most-frequent-category baseline 0.4000 beyond chance" in lucky.reason
    assert lucky.floor is None, "the top-5 floor is not a floor on accuracy"
    # the same lift on 2,000 rows is no luck
    real = quality_gate(0.46, GATE, baseline_value=0.40, metric=five, test_rows=2000)
    assert real.passed and real.p_value < 0.0001
    assert "beyond chance (p < 0.0001 on 2000 test rows)" in real.reason
    # a model below the baseline fails whatever the size
    assert not quality_gate(0.35, GATE, baseline_value=0.4, metric=five, test_rows=2000).passed


def test_accuracy_gate_compares_the_champion_on_the_same_metric():
    from bettercat_assets.core.training.gate import gate_metric

    result = quality_gate(
        0.70, GATE, 2, 0.80, baseline_value=0.4, metric=gate_metric(4), test_rows=500
    )
    assert not result.passed
    assert "accuracy 0.7000 is worse than champion v2's 0.8000" in result.reason
