"""A drift report as users see it: WARN checks, numbers to plot, and the summary file.

The three checks (`MONITORING_CHECKS`) are WARN-severity asset checks on
`category_predictions` in Dagster and lines in `bettercat predict`'s output. The numbers
(`monitoring_numbers`) go on the client's partition, where Dagster plots them over time, and
into `_monitoring.json` beside the predictions, which the fleet view reads.
"""

from __future__ import annotations

import json
from pathlib import Path

from bettercat_assets.core.config.rounding import round_float
from bettercat_assets.core.data.quality import CheckOutcome
from bettercat_assets.core.monitoring.drift import DriftReport, Shift

MONITORING_FILE = "_monitoring.json"

#: Check name -> what it asserts (WARN severity: a failure never fails the run).
MONITORING_CHECKS = {
    "input_drift": "No feature's distribution moved away from the model's training data "
    "(PSI on the reference bins, threshold scaled to the number of products).",
    "prediction_drift": "The shares of top-1 categories and the top-1 scores look like the "
    "model's test split.",
    "estimated_accuracy": "The top-5 accuracy estimated without labels (the test split's hit "
    "rate per top-5 mass bin, products moved by drifted inputs credited as an unrelated "
    "top-5) did not drop from the test split's.",
}


def _shift_text(shift: Shift) -> str:
    return f"{shift.name} (PSI {shift.psi:.3f} > {shift.threshold:.3f})"


def monitoring_outcomes(client_id: str, report: DriftReport) -> list[CheckOutcome]:
    """The three monitoring checks of one scoring."""
    drifted = [s for s in report.features if s.name in report.drifted_features]
    drifted.sort(key=lambda s: report.drifted_features.index(s.name))
    psi = {s.name: round_float(s.psi) for s in report.features}
    inputs = CheckOutcome(
        "input_drift",
        not drifted,
        f"client '{client_id}': drifted feature(s): " + ", ".join(map(_shift_text, drifted))
        if drifted
        else f"no drifted feature among {len(report.features)} ({report.rows} products)",
        {"drifted_features": [s.name for s in drifted], "psi": psi},
    )
    moved = [s for s in (report.top1, report.top1_score) if s.drifted]
    predictions = CheckOutcome(
        "prediction_drift",
        not moved,
        f"client '{client_id}': predictions moved: "
        + ", ".join(map(_shift_text, moved))
        + f"; {report.top1_moved:.1%} of top-1 shares moved"
        if moved
        else f"top-1 categories and scores as on the test split ({report.top1_moved:.1%} moved)",
        {
            "top1_psi": round_float(report.top1.psi),
            "top1_score_psi": round_float(report.top1_score.psi),
        },
    )
    accuracy = CheckOutcome(
        "estimated_accuracy",
        not report.accuracy_dropped,
        f"client '{client_id}': estimated top-5 accuracy {report.estimated_top5:.3f}, "
        f"{report.accuracy_drop:.3f} below the test split's {report.reference_top5:.3f} "
        f"(warns above {report.drop_threshold:.3f})"
        if report.accuracy_dropped
        else f"estimated top-5 accuracy {report.estimated_top5:.3f} "
        f"(test split {report.reference_top5:.3f})",
        {"estimated_top5": round_float(report.estimated_top5)},
    )
    return [inputs, predictions, accuracy]


def monitoring_numbers(report: DriftReport) -> dict[str, float | int]:
    """Numbers for the client's partition (plotted over time) and the summary file."""
    return {
        "monitor_products": report.rows,
        "monitor_drifted_features": len(report.drifted_features),
        "monitor_max_feature_psi": round_float(max((s.psi for s in report.features), default=0)),
        "monitor_top1_psi": round_float(report.top1.psi),
        "monitor_top1_moved": round_float(report.top1_moved),
        "monitor_top1_score_psi": round_float(report.top1_score.psi),
        "monitor_estimated_top5": round_float(report.estimated_top5),
        "monitor_estimated_top5_drop": round_float(report.accuracy_drop),
        "monitor_novel_share": round_float(report.novel_share),
        **{f"psi_{s.name}": round_float(s.psi) for s in report.features},
    }


def write_summary(directory: Path, model_version: int, report: DriftReport) -> Path:
    """`_monitoring.json` beside the predictions: what the fleet view reads."""
    document = {
        "model_version": int(model_version),
        "drifted_features": report.drifted_features,
        "prediction_drifted": bool(report.prediction_drifted),
        "accuracy_dropped": bool(report.accuracy_dropped),
        "numbers": monitoring_numbers(report),
    }
    path = directory / MONITORING_FILE
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return path


def read_summary(directory: Path) -> dict | None:
    """The summary a scoring wrote into `directory`, or None (not monitored, unreadable)."""
    try:
        return json.loads((directory / MONITORING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
