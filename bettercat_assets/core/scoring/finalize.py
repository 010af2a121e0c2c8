"""After the shared pass: each client's checks from its pass statistics and Parquet footers,
its lineage file, and its folder swapped into place on its own, so a reader never sees a
half-written output and one client's wrong output fails only that client."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from bettercat_assets.core.config.errors import BettercatError, DataError
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.data.quality import CheckOutcome
from bettercat_assets.core.scoring.batch_scorer import CLIENT_COLUMN
from bettercat_assets.core.scoring.check_stats import CheckStatistic
from bettercat_assets.core.scoring.pass_stats import PassStatistic, State, read_pass_stats
from bettercat_assets.core.scoring.prediction_checks import (
    InputStats,
    OutputStats,
    duplicate_hashes,
    duplicate_ids,
    footer_rows,
    pass_stats_to_checks,
    prediction_outcomes,
)
from bettercat_assets.core.scoring.scoring_inputs import Prepared
from bettercat_assets.core.scoring.shared_pass import PREDICTION_FIELDS
from bettercat_assets.core.scoring.timing import timed
from bettercat_assets.core.tracking import runs as tracking

LINEAGE_FILE = "_lineage.json"
PREVIEW_ROWS = 10


@dataclass(frozen=True)
class ScoringResult:
    """What one client's scoring wrote, for the CLI summary and Dagster metadata."""

    client_id: str
    model_name: str
    model_version: int
    run_id: str | None
    output_dir: Path
    rows_written: int
    products_scored: int
    preview: pd.DataFrame = field(repr=False)
    checks: tuple[CheckOutcome, ...] = ()
    #: Seconds per phase of the run that scored this client (shared by its clients).
    timings: Mapping[str, float] = field(default_factory=dict, repr=False)
    #: The client's merged pass statistics, by statistic name (`checks` and any passed in).
    pass_stats: Mapping[str, State] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class _ClientNumbers:
    out: OutputStats | None
    inp: InputStats | None
    states: Mapping[str, State]


def finalize_all(
    scored: Mapping[str, Prepared],
    staging: Path,
    stats_dirs: Sequence[Path],
    statistics: Sequence[PassStatistic],
    day: date,
    layout: DataLayout,
    settings: TrackingSettings,
    extra_lineage: dict[str, str],
    timings: dict[str, float],
) -> dict[str, ScoringResult | BettercatError]:
    """Check and swap in every scored client; each gets its result or its own error."""
    with timed(timings, "checks"):
        states = read_pass_stats(stats_dirs, statistics)
        numbers = {cid: _numbers(p, staging, states.get(cid, {})) for cid, p in scored.items()}
    results: dict[str, ScoringResult | BettercatError] = {}
    with timed(timings, "swap_in"):
        for cid, p in scored.items():
            try:
                results[cid] = _finalize(
                    p, staging, numbers[cid], day, layout, settings, extra_lineage
                )
            except BettercatError as exc:
                results[cid] = exc
    return {
        cid: dataclasses.replace(r, timings=timings) if isinstance(r, ScoringResult) else r
        for cid, r in results.items()
    }


def _numbers(p: Prepared, staging: Path, states: Mapping[str, State]) -> _ClientNumbers:
    """The client's check numbers; None when it had no input rows or nothing was written."""
    state = states.get(CheckStatistic.name)
    rows_written = footer_rows(staging / f"{CLIENT_COLUMN}={p.client.client_id}")
    if state is None or not rows_written:
        return _ClientNumbers(None, None, states)
    duplicates = duplicate_hashes(state)
    if duplicates:  # confirmed on the ids themselves: two ids may share a 64-bit hash
        duplicates = duplicate_ids(p.plain_csv, p.client.id_column)
    out, inp = pass_stats_to_checks(state, rows_written, duplicates)
    return _ClientNumbers(out, inp, states)


def _finalize(
    p: Prepared,
    staging: Path,
    numbers: _ClientNumbers,
    day: date,
    layout: DataLayout,
    settings: TrackingSettings,
    extra_lineage: dict[str, str],
) -> ScoringResult:
    cid = p.client.client_id
    out, inp = numbers.out, numbers.inp
    if inp is None or inp.rows == 0 or out is None:
        raise DataError(cid, p.source, "no data rows (header only); nothing was written")
    if inp.rows != inp.distinct_ids:
        raise DataError(
            cid,
            p.source,
            f"column '{p.client.id_column}' has duplicate values; nothing was written",
        )
    champion = tracking.champion_version(tracking.mlflow_client(settings), p.client.model_name)
    checks = prediction_outcomes(
        out,
        inp,
        n_classes=p.model.n_classes,
        k=p.client.top_k,
        champion_version=int(champion.version) if champion else None,
    )
    client_dir = staging / f"{CLIENT_COLUMN}={cid}"
    (client_dir / LINEAGE_FILE).write_text(json.dumps(_lineage(p, day, extra_lineage), indent=2))
    preview = _preview(client_dir)
    final = layout.predictions_dir(cid, day)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_leftovers(final)
    _swap_in(client_dir, final)
    return ScoringResult(
        client_id=cid,
        model_name=p.client.model_name,
        model_version=p.model.version,
        run_id=p.run_id,
        output_dir=final,
        rows_written=out.rows,
        products_scored=out.products,
        preview=preview,
        checks=tuple(checks),
        pass_stats=dict(numbers.states),
    )


def _lineage(p: Prepared, day: date, extra_lineage: dict[str, str]) -> dict[str, object]:
    return {
        "client_id": p.client.client_id,
        "model_name": p.client.model_name,
        "model_version": p.model.version,
        "model_run_id": p.run_id,
        "input_path": str(p.source),
        "scored_at": datetime.now(timezone.utc).isoformat(),
        "inference_date": day.isoformat(),
        **extra_lineage,
    }


def _preview(client_dir: Path) -> pd.DataFrame:
    """The first rows of the client's first part file (a streaming read of one small batch)."""
    for part in sorted(client_dir.glob("part-*.parquet")):
        batch = next(pq.ParquetFile(part).iter_batches(batch_size=PREVIEW_ROWS), None)
        if batch is not None and batch.num_rows:
            return batch.to_pandas()
    return pd.DataFrame(columns=[f.name for f in PREDICTION_FIELDS])


def clear_leftovers(final: Path) -> None:
    """Clean up after a run killed mid-swap or mid-write; call it only holding the output lock.

    A run killed between the two renames of `_swap_in` leaves the previous output only as
    `_old-*`: put it back first, then remove staging/old/input leftovers.
    """
    olds = sorted(final.parent.glob(f"_old-{final.name}-*"), key=lambda p: p.stat().st_mtime)
    if not final.exists() and olds:
        os.rename(olds[-1], final)
    for stale in final.parent.glob(f"_*-{final.name}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _swap_in(staging: Path, final: Path) -> None:
    """Replace `final` with `staging` by renames: readers never see a half-written directory."""
    old = final.parent / f"_old-{final.name}-{uuid.uuid4().hex[:8]}"
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)
