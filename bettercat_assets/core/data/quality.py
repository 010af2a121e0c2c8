"""Data-quality checks as plain functions (the Dagster layer turns them into asset checks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.rounding import round_float
from bettercat_assets.core.data.loading import MISSING_MARKERS


@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict, with a sentence saying why and numbers to show."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _missing_mask(column: pd.Series) -> pd.Series:
    return column.str.strip().str.lower().isin(MISSING_MARKERS)


def check_schema(cfg: ClientConfig, raw: pd.DataFrame, path: Path) -> CheckOutcome:
    """Required columns present, numeric features numeric (text and categorical are strings)."""
    required = [cfg.id_column, *cfg.features, cfg.label_column]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        return CheckOutcome(
            "schema",
            False,
            f"client '{cfg.client_id}': {path}: missing column(s) {missing}",
            {"missing_columns": missing},
        )
    non_numeric = {}
    for name in cfg.features_of_kind("numeric"):
        text = raw[name]
        missing = _missing_mask(text)
        parsed = pd.to_numeric(text.str.strip().mask(missing), errors="coerce")
        # Same rule as the loader: "inf" or "1e999" parse, but RandomForest rejects them.
        bad = ~np.isfinite(parsed.to_numpy(dtype="float64")) & ~missing.to_numpy()
        if bad.any():
            non_numeric[name] = str(text[bad].iloc[0])
    if non_numeric:
        first = next(iter(non_numeric))
        return CheckOutcome(
            "schema",
            False,
            f"client '{cfg.client_id}': {path}: column '{first}' must be numeric (finite), "
            f"found {non_numeric[first]!r}",
            {"non_numeric_columns": sorted(non_numeric)},
        )
    return CheckOutcome("schema", True, "all required columns present; features numeric")


def check_null_share(cfg: ClientConfig, raw: pd.DataFrame, path: Path) -> CheckOutcome:
    """Share of missing values per feature at most `data_checks.max_null_share` (text features
    are left out: missing text is the empty text, not a gap in the data)."""
    bound = cfg.data_checks.max_null_share
    text = set(cfg.features_of_kind("text"))
    shares = {
        name: float(_missing_mask(raw[name]).mean()) if len(raw) else 1.0
        for name in cfg.features
        if name in raw.columns and name not in text
    }
    worst = max(shares, key=shares.get) if shares else None
    passed = worst is None or shares[worst] <= bound
    text = (
        f"max null share {shares[worst]:.3f} ('{worst}') <= {bound}"
        if passed and worst
        else f"client '{cfg.client_id}': {path}: column '{worst}' is {shares.get(worst, 1):.1%} "
        f"missing, above the bound {bound:.1%}"
    )
    shown = {name: round_float(share) for name, share in shares.items()}
    return CheckOutcome("null_share", passed, text, {"null_share": shown, "bound": bound})


def check_rows_and_classes(cfg: ClientConfig, raw: pd.DataFrame, path: Path) -> CheckOutcome:
    """At least `data_checks.min_rows` rows and at least 2 classes."""
    rows = len(raw)
    classes = int(raw[cfg.label_column].nunique()) if cfg.label_column in raw.columns else 0
    problems = []
    if rows < cfg.data_checks.min_rows:
        problems.append(f"{rows} rows < {cfg.data_checks.min_rows}")
    if classes < 2:
        problems.append(f"{classes} class(es) in '{cfg.label_column}' < 2")
    text = (
        f"client '{cfg.client_id}': {path}: " + "; ".join(problems)
        if problems
        else f"{rows} rows, {classes} classes"
    )
    return CheckOutcome("rows_and_classes", not problems, text, {"rows": rows, "classes": classes})


def check_unique_products(cfg: ClientConfig, raw: pd.DataFrame, path: Path) -> CheckOutcome:
    """No duplicate `product_id`."""
    if cfg.id_column not in raw.columns:
        return CheckOutcome("unique_product_id", False, f"missing column '{cfg.id_column}'")
    dupes = raw[cfg.id_column][raw[cfg.id_column].duplicated()]
    if dupes.empty:
        return CheckOutcome("unique_product_id", True, "no duplicate product ids")
    return CheckOutcome(
        "unique_product_id",
        False,
        f"client '{cfg.client_id}': {path}: column '{cfg.id_column}' has {dupes.size} duplicate(s), "
        f"e.g. {dupes.iloc[0]!r}",
        {"duplicates": int(dupes.size)},
    )


#: Check name -> function; the names are the asset-check names in Dagster.
TRAINING_DATA_CHECKS = {
    "schema": check_schema,
    "null_share": check_null_share,
    "rows_and_classes": check_rows_and_classes,
    "unique_product_id": check_unique_products,
}

#: Check name -> what it asserts, for the `category_predictions` checks.
PREDICTION_CHECKS = {
    "all_products_scored": "Every input product appears in the output.",
    "rows_per_product": "Exactly min(k, n_classes) rows per product.",
    "rank_order": "Ranks run 0..k-1 in descending score order.",
    "score_bounds": "Scores lie in [0, 1] and sum to at most 1 + 1e-6 per product.",
    "model_is_champion": "The output's model_version is the registry's @champion.",
}


def training_data_outcomes(cfg: ClientConfig, raw: pd.DataFrame, path: Path) -> list[CheckOutcome]:
    return [check(cfg, raw, path) for check in TRAINING_DATA_CHECKS.values()]
