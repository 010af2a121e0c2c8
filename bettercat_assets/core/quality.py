"""Data-quality checks as plain functions (the Dagster layer turns them into asset checks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bettercat_assets.core.config import ClientConfig
from bettercat_assets.core.data import MISSING_MARKERS
from bettercat_assets.core.rounding import round_float


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
    """Required columns present, features numeric."""
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
    for name in cfg.features:
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
    """Share of missing values per feature at most `data_checks.max_null_share`."""
    bound = cfg.data_checks.max_null_share
    shares = {
        name: float(_missing_mask(raw[name]).mean()) if len(raw) else 1.0
        for name in cfg.features
        if name in raw.columns
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


def prediction_outcomes(
    predictions: pd.DataFrame,
    input_products: pd.Series,
    n_classes: int,
    k: int,
    champion_version: int | None,
) -> list[CheckOutcome]:
    """Checks on a scored output against its input and the registry's champion.

    Each check judges one property, so a defect fails the check that names it: a product with
    a missing row fails `rows_per_product` (its remaining ranks are still 0..n-1 in order), a
    duplicated or skipped rank fails `rank_order`, and so on.
    """
    kk = min(k, n_classes)
    ids = predictions["product_id"]
    scored = set(ids.unique())
    inputs = pd.Series(input_products)
    unscored = inputs[~inputs.isin(scored)]
    sizes = predictions.groupby("product_id", sort=False).size()
    wrong_count = sizes[sizes != kk]

    ordered = predictions.sort_values(["product_id", "rank"], kind="stable")
    # Within a product, ranks must be exactly 0, 1, ..., n-1 (no gap, duplicate or offset).
    expected_rank = ordered.groupby("product_id", sort=False).cumcount().to_numpy()
    bad_ranks = ordered["product_id"][ordered["rank"].to_numpy() != expected_rank].unique()
    same = ordered["product_id"].to_numpy()[1:] == ordered["product_id"].to_numpy()[:-1]
    rising = np.diff(ordered["pred_score"].to_numpy(dtype="float64")) > 0
    bad_order = int((same & rising).sum())

    scores = predictions["pred_score"].astype("float64")
    in_range = bool(scores.between(0.0, 1.0).all())  # NaN is not between: fails
    sums = scores.groupby(ids, sort=False).sum()
    max_sum = float(sums.max()) if len(sums) else 0.0
    versions = sorted(int(v) for v in predictions["model_version"].unique())

    if bad_ranks.size == 0 and bad_order == 0:
        order_text = f"ranks 0..{kk - 1} per product in descending score order"
    else:
        parts = []
        if bad_ranks.size:
            parts.append(
                f"{bad_ranks.size} product(s) whose ranks are not 0..n-1, e.g. {bad_ranks[0]!r}"
            )
        if bad_order:
            parts.append(f"{bad_order} rank step(s) with a rising score")
        order_text = "; ".join(parts)
    return [
        CheckOutcome(
            "all_products_scored",
            unscored.empty,
            f"all {inputs.size} input products are scored"
            if unscored.empty
            else f"{unscored.size} of {inputs.size} input product(s) not scored, "
            f"e.g. {unscored.iloc[0]!r}",
            {"input_products": int(inputs.size), "scored_products": len(scored)},
        ),
        CheckOutcome(
            "rows_per_product",
            wrong_count.empty,
            f"{kk} rows per product (min(k={k}, classes={n_classes}))"
            if wrong_count.empty
            else f"{len(wrong_count)} product(s) do not have {kk} rows, e.g. "
            f"{wrong_count.index[0]!r} has {int(wrong_count.iloc[0])}",
            {"expected_rows_per_product": kk},
        ),
        CheckOutcome(
            "rank_order",
            bad_ranks.size == 0 and bad_order == 0,
            order_text,
            {"products_with_bad_ranks": int(bad_ranks.size), "rising_steps": bad_order},
        ),
        CheckOutcome(
            "score_bounds",
            in_range and max_sum <= 1 + 1e-6,
            f"scores in [{scores.min():.4f}, {scores.max():.4f}], max per-product sum "
            f"{max_sum:.6f} (must be in [0, 1] and <= 1 + 1e-6)",
            {"max_per_product_sum": round_float(max_sum, 6)},  # the bound is 1 + 1e-6
        ),
        CheckOutcome(
            "model_is_champion",
            champion_version is not None and versions == [champion_version],
            f"output model_version {versions}, champion v{champion_version}"
            if champion_version is not None
            else f"output model_version {versions}, but the registry has no @champion",
            {
                "output_versions": versions,
                **({"champion_version": champion_version} if champion_version is not None else {}),
            },
        ),
    ]
