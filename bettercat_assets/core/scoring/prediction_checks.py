"""The `category_predictions` checks: verdicts from the numbers the scoring pass made.

The numbers come from the pass that scores and writes (`core/scoring/check_stats.py`, one
state per client folded by the Spark workers and saved beside the predictions) and from the
Parquet footers Spark wrote: nothing re-reads the inputs or the output. The driver holds a
handful of numbers per client plus 8 bytes per input product (the id hashes that find
duplicates across the whole input).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bettercat_assets.core.data.quality import CheckOutcome
from bettercat_assets.core.scoring.pass_stats import State

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
    """What the written output holds for one client, as the scoring pass made it."""

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
    #: rows the scoring pass made (its own count); `rows` is what the Parquet footers hold
    rows_scored: int | None = None


def footer_rows(client_dir: Path) -> int:
    """Rows in a client's written parquet, from the footers alone (no data page is read)."""
    return sum(pq.ParquetFile(part).metadata.num_rows for part in client_dir.glob("part-*"))


def duplicate_hashes(state: State) -> int:
    """Input rows whose id hash repeats an earlier one (the hashes come sorted)."""
    hashes = state["id_hashes"]
    return int(np.count_nonzero(hashes[1:] == hashes[:-1])) if hashes.size > 1 else 0


def duplicate_ids(plain_csv: Path, id_column: str) -> int:
    """Input rows repeating an earlier row's id, counted exactly from the id column (read only
    when the hashes suggest a duplicate: two distinct ids may share a 64-bit hash)."""
    table = pacsv.read_csv(
        plain_csv,
        convert_options=pacsv.ConvertOptions(
            include_columns=[id_column], strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    ids = table.column(id_column)
    return len(ids) - len(ids.unique())


def pass_stats_to_checks(
    state: State, rows_written: int, duplicates: int
) -> tuple[OutputStats, InputStats]:
    """The checks' numbers from a client's merged pass state and its Parquet footers."""

    def count(name: str) -> int:
        return int(state[name][0])

    def example(name: str) -> str | None:
        return str(state[name][0]) if state[name].size else None

    wrong = example("wrong_example")
    out = OutputStats(
        rows=rows_written,
        products=count("products"),
        wrong_count=count("wrong_count"),
        wrong_count_example=(wrong, int(state["wrong_example_n"][0]))
        if wrong is not None
        else None,
        bad_ranks=count("bad_ranks"),
        bad_ranks_example=example("bad_rank_example"),
        rising_steps=count("rising_steps"),
        min_score=float(state["min_score"][0]),
        max_score=float(state["max_score"][0]),
        max_sum=float(state["max_sum"][0]),
        versions=tuple(int(v) for v in state["versions"]),
        rows_scored=count("rows"),
    )
    rows = count("input_rows")
    inp = InputStats(rows, rows - duplicates, count("unscored"), example("unscored_example"))
    return out, inp


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
    problems = []
    if out.wrong_count:
        example = out.wrong_count_example or ("?", 0)
        problems.append(
            f"{out.wrong_count} product(s) do not have {kk} rows, e.g. "
            f"{example[0]!r} has {example[1]}"
        )
    if out.rows_scored is not None and out.rows_scored != out.rows:
        problems.append(
            f"{out.rows} rows written (Parquet footers) but {out.rows_scored} rows scored"
        )
    return CheckOutcome(
        "rows_per_product",
        not problems,
        "; ".join(problems) or f"{kk} rows per product (min(k={k}, classes={n_classes}))",
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
