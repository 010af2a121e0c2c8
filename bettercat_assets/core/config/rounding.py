"""Rounding of the numbers people read: MLflow metrics, Dagster metadata, diagnostic tables.

Metrics keep 4 decimals (accuracy 0.8765, log-loss 2.3457); sizes in MB and durations in
seconds keep 2. A non-zero value that would round to 0 keeps its significant digits instead,
so a tiny model still shows a size and a rare error rate is not turned into a perfect score.
Decisions (the quality gate, check verdicts) are taken on the unrounded values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: Decimals of metrics (accuracies, F1, log-loss, shares).
METRIC_DECIMALS = 4
#: Decimals of sizes (`*_mb`) and durations (`*_seconds`).
COARSE_DECIMALS = 2
_COARSE_SUFFIXES = ("_mb", "_seconds")


def round_float(value: float, decimals: int = METRIC_DECIMALS) -> float:
    """`value` rounded to `decimals` places; one that would become 0 keeps `decimals`
    significant digits; NaN and infinities pass through."""
    value = float(value)
    if not math.isfinite(value) or value == 0:
        return value
    rounded = round(value, decimals)
    return rounded if rounded != 0 else float(f"{value:.{decimals}g}")


def decimals_for(name: str) -> int:
    """How many decimals the metric or metadata key `name` keeps."""
    return COARSE_DECIMALS if name.endswith(_COARSE_SUFFIXES) else METRIC_DECIMALS


def round_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Every value rounded to the decimals its name calls for (see `decimals_for`)."""
    return {name: round_float(value, decimals_for(name)) for name, value in metrics.items()}


def round_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose float columns are rounded like metrics of the column's name
    (`pred_score` 0.0235789 -> 0.0236), as float64 so a float32 does not print 0.023600001."""
    rounded = frame.copy()
    for name in frame.select_dtypes("floating").columns:
        values = frame[name].astype("float64").tolist()
        rounded[name] = [round_float(v, decimals_for(str(name))) for v in values]
    return rounded
