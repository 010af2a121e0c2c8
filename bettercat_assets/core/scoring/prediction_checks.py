"""The `category_predictions` checks, computed by Spark over the written output.

Nothing here collects rows to the driver: one Spark job aggregates the written parquet per
product, then per client, and counts the input per client; the verdicts are built from that
handful of numbers per client, so driver memory does not grow with the product count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from bettercat_assets.core.data.quality import CheckOutcome
from bettercat_assets.core.scoring.batch_scorer import CLIENT_COLUMN, ID_COLUMN

SCORE_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class InputStats:
    """What the scoring input held for one client."""

    rows: int
    distinct_ids: int
    unscored: int
    unscored_example: str | None


@dataclass(frozen=True)
class OutputStats:
    """What the written output holds for one client, as aggregated by Spark."""

    rows: int
    products: int
    wrong_count: int
    wrong_count_example: tuple[str, int] | None
    bad_ranks: int
    bad_ranks_example: str | None
    rising_steps: int
    min_score: float
    max_score: float
    max_sum: float
    versions: tuple[int, ...]


def _example(condition: Column, value: Column) -> Column:
    """The smallest `value` among rows meeting `condition` (a deterministic example)."""
    return F.min(F.when(condition, value))


def _per_product(outputs: DataFrame) -> DataFrame:
    ranked = F.array_sort(F.collect_list(F.struct("rank", "pred_score")))
    return outputs.groupBy(CLIENT_COLUMN, ID_COLUMN).agg(
        F.count(F.lit(1)).alias("n"),
        F.min("rank").alias("r_min"),
        F.max("rank").alias("r_max"),
        F.count_distinct("rank").alias("n_ranks"),
        F.sum(F.col("pred_score").cast("double")).alias("score_sum"),
        F.min("pred_score").alias("score_min"),
        F.max("pred_score").alias("score_max"),
        F.collect_set("model_version").alias("versions"),
        ranked.alias("ranked"),
    )


def _rising_steps(ranked: Column) -> Column:
    """Rank steps whose score rises, in an array of (rank, score) sorted by rank."""
    steps = F.filter(
        F.sequence(F.lit(1), F.greatest(F.size(ranked) - 1, F.lit(1))),
        lambda i: (
            (F.size(ranked) > i)
            & ~F.isnan(ranked[i]["pred_score"])  # Spark orders NaN above every number: a NaN
            & ~F.isnan(ranked[i - 1]["pred_score"])  # score is score_bounds' defect, not a rise
            & (ranked[i]["pred_score"] > ranked[i - 1]["pred_score"])
        ),
    )
    return F.size(steps)


def _client_aggregates(outputs: DataFrame, rows_per_product: Mapping[str, int]) -> DataFrame:
    """One row per client: the output's numbers, from a per-product then a per-client pass."""
    expected = F.create_map(
        *[x for cid, kk in rows_per_product.items() for x in (F.lit(cid), F.lit(int(kk)))]
    )[F.col(CLIENT_COLUMN)]
    products = _per_product(outputs).withColumn("kk", expected)
    n, kk = F.col("n"), F.col("kk")
    wrong = n != kk
    # An input id listed m times is scored m times: m * kk rows, each rank m times.
    duplicated = (n > kk) & (n % kk == 0) & (F.col("n_ranks") == kk)
    bad_rank = (F.col("r_min") != 0) | (F.col("r_max") != n - 1) | (F.col("n_ranks") != n)
    return products.groupBy(CLIENT_COLUMN).agg(
        F.sum("n").alias("rows"),
        F.count(F.lit(1)).alias("products"),
        F.sum(wrong.cast("long")).alias("wrong_count"),
        _example(wrong, F.struct(ID_COLUMN, "n")).alias("wrong_example"),
        F.sum(F.when(duplicated, n / kk - 1).otherwise(0)).cast("long").alias("duplicate_rows"),
        F.sum(bad_rank.cast("long")).alias("bad_ranks"),
        _example(bad_rank, F.col(ID_COLUMN)).alias("bad_rank_example"),
        F.sum(_rising_steps(F.col("ranked"))).alias("rising_steps"),
        F.min("score_min").alias("min_score"),
        F.max("score_max").alias("max_score"),
        F.max("score_sum").alias("max_sum"),
        F.array_sort(F.array_distinct(F.flatten(F.collect_set("versions")))).alias("versions"),
    )


def prediction_stats(
    outputs: DataFrame, inputs: DataFrame, rows_per_product: Mapping[str, int]
) -> tuple[dict[str, OutputStats], dict[str, InputStats]]:
    """Per-client stats of a long output and its input, in one Spark job.

    `outputs` has `client_id`, product_id, pred_score, rank, model_version; `inputs` has
    `client_id` and product_id. A second job runs only when an input product is missing from
    the output, to name one.
    """
    counts = inputs.groupBy(CLIENT_COLUMN).agg(F.count(F.lit(1)).alias("input_rows"))
    rows = counts.join(_client_aggregates(outputs, rows_per_product), CLIENT_COLUMN, "left")
    out: dict[str, OutputStats] = {}
    inp: dict[str, InputStats] = {}
    for row in rows.collect():
        cid, input_rows = row[CLIENT_COLUMN], int(row["input_rows"])
        if row["rows"] is None:  # nothing written for this client
            inp[cid] = InputStats(input_rows, input_rows, input_rows, None)
            continue
        out[cid] = _to_output_stats(row)
        distinct = input_rows - int(row["duplicate_rows"])
        inp[cid] = InputStats(input_rows, distinct, max(0, distinct - out[cid].products), None)
    missing = [cid for cid, stats in inp.items() if stats.unscored and cid in out]
    examples = _unscored_examples(inputs, outputs, missing) if missing else {}
    for cid, example in examples.items():
        inp[cid] = dataclasses.replace(inp[cid], unscored_example=example)
    return out, inp


def _to_output_stats(row) -> OutputStats:
    example = row["wrong_example"]
    return OutputStats(
        rows=int(row["rows"]),
        products=int(row["products"]),
        wrong_count=int(row["wrong_count"]),
        wrong_count_example=(str(example[ID_COLUMN]), int(example["n"])) if example else None,
        bad_ranks=int(row["bad_ranks"]),
        bad_ranks_example=row["bad_rank_example"],
        rising_steps=int(row["rising_steps"]),
        min_score=float(row["min_score"]),
        max_score=float(row["max_score"]),
        max_sum=float(row["max_sum"]),
        versions=tuple(int(v) for v in row["versions"]),
    )


def _unscored_examples(
    inputs: DataFrame, outputs: DataFrame, client_ids: list[str]
) -> dict[str, str]:
    """The smallest input product id missing from the output, for each of `client_ids`."""
    wanted = F.col(CLIENT_COLUMN).isin(client_ids)
    ids = inputs.where(wanted).select(CLIENT_COLUMN, ID_COLUMN)
    scored = outputs.where(wanted).select(CLIENT_COLUMN, ID_COLUMN).distinct()
    missing = ids.join(scored, [CLIENT_COLUMN, ID_COLUMN], "left_anti")
    rows = missing.groupBy(CLIENT_COLUMN).agg(F.min(ID_COLUMN).alias("example")).collect()
    return {r[CLIENT_COLUMN]: r["example"] for r in rows}


def prediction_outcomes(
    out: OutputStats,
    inp: InputStats,
    n_classes: int,
    k: int,
    champion_version: int | None,
) -> list[CheckOutcome]:
    """One verdict per check in `quality.PREDICTION_CHECKS`, each judging one property."""
    kk = min(k, n_classes)
    return [
        _all_scored(inp),
        _rows_per_product(out, kk, k, n_classes),
        _rank_order(out, kk),
        _score_bounds(out),
        _model_is_champion(out, champion_version),
    ]


def _all_scored(inp: InputStats) -> CheckOutcome:
    ok = inp.unscored == 0
    return CheckOutcome(
        "all_products_scored",
        ok,
        f"all {inp.rows} input products are scored"
        if ok
        else f"{inp.unscored} of {inp.rows} input product(s) not scored, "
        f"e.g. {inp.unscored_example!r}",
        {"input_products": inp.rows, "scored_products": inp.distinct_ids - inp.unscored},
    )


def _rows_per_product(out: OutputStats, kk: int, k: int, n_classes: int) -> CheckOutcome:
    ok = out.wrong_count == 0
    example = out.wrong_count_example
    return CheckOutcome(
        "rows_per_product",
        ok,
        f"{kk} rows per product (min(k={k}, classes={n_classes}))"
        if ok
        else f"{out.wrong_count} product(s) do not have {kk} rows, e.g. "
        f"{example[0]!r} has {example[1]}",
        {"expected_rows_per_product": kk},
    )


def _rank_order(out: OutputStats, kk: int) -> CheckOutcome:
    parts = []
    if out.bad_ranks:
        parts.append(
            f"{out.bad_ranks} product(s) whose ranks are not 0..n-1, e.g. {out.bad_ranks_example!r}"
        )
    if out.rising_steps:
        parts.append(f"{out.rising_steps} rank step(s) with a rising score")
    return CheckOutcome(
        "rank_order",
        not parts,
        "; ".join(parts) or f"ranks 0..{kk - 1} per product in descending score order",
        {"products_with_bad_ranks": out.bad_ranks, "rising_steps": out.rising_steps},
    )


def _score_bounds(out: OutputStats) -> CheckOutcome:
    in_range = out.min_score >= 0.0 and out.max_score <= 1.0  # NaN compares False: fails
    return CheckOutcome(
        "score_bounds",
        in_range and out.max_sum <= 1 + SCORE_SUM_TOLERANCE,
        f"scores in [{out.min_score:.4f}, {out.max_score:.4f}], max per-product sum "
        f"{out.max_sum:.6f} (must be in [0, 1] and <= 1 + 1e-6)",
        {"max_per_product_sum": round(out.max_sum, 6)},
    )


def _model_is_champion(out: OutputStats, champion_version: int | None) -> CheckOutcome:
    versions = list(out.versions)
    metadata: dict[str, object] = {"output_versions": versions}
    if champion_version is not None:
        metadata["champion_version"] = champion_version
    return CheckOutcome(
        "model_is_champion",
        champion_version is not None and versions == [champion_version],
        f"output model_version {versions}, champion v{champion_version}"
        if champion_version is not None
        else f"output model_version {versions}, but the registry has no @champion",
        metadata,
    )
