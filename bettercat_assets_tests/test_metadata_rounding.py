"""What people read in the UIs: rounded numbers, no NaN or fake 0 for values that do not exist,
and a weakest-categories table that says what is weak and why."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bettercat_assets.core.config.clients import QualityGate
from bettercat_assets.core.config.rounding import decimals_for, round_float, round_metrics
from bettercat_assets.core.scoring.prediction_checks import (
    InputStats,
    OutputStats,
    prediction_outcomes,
)
from bettercat_assets.core.training.evaluation import per_category_table, weakest_categories
from bettercat_assets.core.training.gate import gate_check_metadata, quality_gate

GATE = QualityGate(min_top5_accuracy=0.3, max_top5_regression=0.02)


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (0.9784146359999681, 2, 0.98),
        (2.4927330017089844, 2, 2.49),
        (1.000000029336661, 4, 1.0),
        (0.876543, 4, 0.8765),
        (16000.0, 4, 16000.0),
        (0.0000123456, 4, 1.235e-05),  # would round to 0: keeps significant digits
        (-0.0000123, 2, -1.2e-05),
        (0.0, 4, 0.0),
    ],
)
def test_round_float(value, decimals, expected):
    assert round_float(value, decimals) == expected


def test_round_float_passes_nan_and_infinity_through():
    assert math.isnan(round_float(float("nan")))
    assert round_float(float("inf")) == float("inf")


def test_metrics_round_by_kind():
    assert (decimals_for("fit_seconds"), decimals_for("compact_model_mb")) == (2, 2)
    assert decimals_for("top5_accuracy") == 4
    raw = {"fit_seconds": 0.9784146, "compact_model_mb": 2.4927330, "log_loss": 2.345678912}
    assert round_metrics(raw) == {"fit_seconds": 0.98, "compact_model_mb": 2.49, "log_loss": 2.3457}


def test_gate_metadata_without_a_champion_has_no_champion_keys_and_no_nan():
    gate = quality_gate(0.81234567, GATE, baseline_value=0.4123456)
    metadata = gate_check_metadata(gate)
    assert metadata == {
        "metric": "top5_accuracy",
        "value": 0.8123,
        "floor": 0.3,
        "tolerance": 0.02,
        "baseline_metric": "prior_top5_accuracy",
        "baseline_value": 0.4123,
    }


def test_gate_metadata_with_a_champion():
    gate = quality_gate(0.5, GATE, champion_version=3, champion_value=0.7512345)
    metadata = gate_check_metadata(gate)
    assert (metadata["champion_version"], metadata["champion_value"]) == (3, 0.7512)
    assert "baseline_value" not in metadata
    assert not any(isinstance(v, float) and math.isnan(v) for v in metadata.values())


def crafted_predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """14 categories: c00..c10 never predicted right (c10 has no test rows), c11..c13 are."""
    classes = np.array([f"c{i:02d}" for i in range(14)])
    y_true = np.array([f"c{i:02d}" for i in range(10)] * 2 + ["c11", "c12", "c13"] * 3)
    proba = np.zeros((len(y_true), len(classes)))
    for row, label in enumerate(y_true):
        truth = int(label[1:])
        if truth >= 11:
            proba[row, truth] = 1.0
        else:  # wrong at rank 1; c00..c04 still in the top 5, c05..c09 not at all
            proba[row, 11:14] = [0.4, 0.3, 0.2]
            proba[row, 13] += 0.0 if truth >= 5 else -0.2
            proba[row, truth] = 0.05 if truth < 5 else 0.0
    proba /= proba.sum(axis=1, keepdims=True)
    return y_true, proba, classes


def test_per_category_table_shows_support_predictions_and_top5_recall():
    y_true, proba, classes = crafted_predictions()
    table = per_category_table(y_true, classes[proba.argmax(axis=1)], classes, proba)
    assert list(table.columns) == [
        "category", "precision", "recall", "f1", "support", "predicted", "top5_recall",
    ]  # fmt: skip
    by_cat = table.set_index("category")
    assert by_cat.loc["c00", "support"] == 2 and by_cat.loc["c00", "predicted"] == 0
    assert by_cat.loc["c00", "top5_recall"] == 1.0 and by_cat.loc["c07", "top5_recall"] == 0.0
    assert pd.isna(by_cat.loc["c10", "top5_recall"])
    assert by_cat.loc["c11", "precision"] == round(3 / 23, 4)  # rounded to 4 decimals
    # weakest first: f1 = 0 and never in the top 5 before f1 = 0 but in the top 5
    assert list(table["category"][:5]) == ["c05", "c06", "c07", "c08", "c09"]


def test_weakest_categories_say_how_many_are_weak_and_why():
    y_true, proba, classes = crafted_predictions()
    table = per_category_table(y_true, classes[proba.argmax(axis=1)], classes, proba)
    weakest = weakest_categories(table, top=8)
    assert len(weakest.table) == 8 and (weakest.table["support"] > 0).all()
    assert "10 of 13 categories with test rows have f1 = 0" in weakest.summary
    assert "5 of these are not among the 5 best-scored either" in weakest.summary
    assert "1 categories have no test rows" in weakest.summary
    markdown = weakest.markdown()
    assert markdown.startswith(weakest.summary)
    assert "| category" in markdown and "top5_recall" in markdown


def test_prediction_check_metadata_is_rounded_and_omits_a_missing_champion():
    # Two float32 scores 0.6000000143 + 0.4000000151, as Spark sums them per product.
    out = OutputStats(
        rows=2,
        products=1,
        wrong_count=0,
        wrong_count_example=None,
        bad_ranks=0,
        bad_ranks_example=None,
        rising_steps=0,
        min_score=0.4000000151,
        max_score=0.6000000143,
        max_sum=0.6000000143 + 0.4000000151,
        versions=(2,),
    )
    inp = InputStats(rows=1, distinct_ids=1, unscored=0, unscored_example=None)
    outcomes = {o.name: o for o in prediction_outcomes(out, inp, 2, 5, champion_version=None)}
    assert outcomes["score_bounds"].metadata["max_per_product_sum"] == 1.0
    assert outcomes["model_is_champion"].metadata == {"output_versions": [2]}
    assert not outcomes["model_is_champion"].passed


def test_preview_scores_are_rounded_like_metrics():
    from bettercat_assets.core.config.rounding import round_frame

    preview = pd.DataFrame(
        {
            "product_id": ["p1", "p1"],
            "pred_label": ["a", "b"],
            "pred_score": np.array([0.9264535307884216, 0.023578884080052376], dtype=np.float32),
            "rank": np.array([0, 1], dtype=np.int32),
        }
    )
    text = round_frame(preview).to_markdown(index=False)
    assert "0.9265" in text and "0.0236" in text
    assert "0.0235789" not in text and "0.92645" not in text
    assert preview["pred_score"].dtype == np.float32, "the original frame is left alone"
    assert round_frame(preview)["rank"].tolist() == [0, 1]
