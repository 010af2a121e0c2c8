"""The fleet view: every client in one table, those that need attention first, and why.

Read from what the pipeline already keeps, at a cost proportional to the clients: each
client's latest prediction folder (`_lineage.json`, `_monitoring.json`), and the MLflow
registry in one paginated search of all model versions (gate results) and one of all
registered models (the `@champion` alias). The caller adds the clients whose last run failed
(Dagster knows; `bettercat fleet` reads the failures scoring recorded).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bettercat_assets.core.config.clients import ClientConfig
from bettercat_assets.core.config.paths import DataLayout
from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.monitoring.signals import read_summary
from bettercat_assets.core.tracking import runs as tracking

FLEET_FILE = "fleet.parquet"
#: Points per reason: the ranking's order of urgency.
WEIGHTS = {
    "last run failed": 50,
    "no champion": 40,
    "gate failed": 30,
    "accuracy drop": 20,
    "prediction drift": 12,
    "input drift": 10,
    "stale": 8,
    "never scored": 6,
}


@dataclass(frozen=True)
class RegistryHealth:
    """One model's registry state: its champion and its versions' gate results, newest first."""

    champion: int | None = None
    gates: tuple[str, ...] = ()

    def failures_in_a_row(self) -> int:
        count = 0
        for status in self.gates:
            if status != "failed":
                break
            count += 1
        return count


@dataclass(frozen=True)
class FleetRow:
    """One client's line of the fleet table."""

    client_id: str
    attention: int
    reasons: str
    champion: int | None
    scored_version: int | None
    days_since_scored: float | None
    gate_failures_in_a_row: int
    drifted_features: str = ""
    estimated_top5: float | None = None
    estimated_top5_drop: float | None = None


def registry_health(settings: TrackingSettings) -> dict[str, RegistryHealth]:
    """model name -> its champion and gate results, from two paginated registry searches."""
    client = tracking.mlflow_client(settings)
    gates: dict[str, list[tuple[int, str]]] = {}
    token = None
    while True:
        page = client.search_model_versions(max_results=10_000, page_token=token)
        for mv in page:
            gates.setdefault(mv.name, []).append((int(mv.version), mv.tags.get("gate_status", "")))
        token = page.token
        if not token:
            break
    champions: dict[str, int] = {}
    token = None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        for rm in page:
            alias = (rm.aliases or {}).get(tracking.CHAMPION_ALIAS)
            if alias is not None:
                champions[rm.name] = int(alias)
        token = page.token
        if not token:
            break
    return {
        name: RegistryHealth(
            champions.get(name), tuple(s for _, s in sorted(versions, reverse=True))
        )
        for name, versions in gates.items()
    }


def latest_scoring(layout: DataLayout, client_id: str) -> tuple[dict, dict | None] | None:
    """(lineage, monitoring summary) of the client's newest prediction folder, or None."""
    root = layout.predictions_root(client_id)
    days = sorted(p for p in root.glob("date=*") if p.is_dir()) if root.is_dir() else []
    for folder in reversed(days):
        try:
            lineage = json.loads((folder / "_lineage.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return lineage, read_summary(folder)
    return None


def _age_days(lineage: dict, now: datetime) -> float | None:
    try:
        scored = datetime.fromisoformat(lineage["scored_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (now - scored).total_seconds() / 86400


def client_row(
    cfg: ClientConfig,
    scoring: tuple[dict, dict | None] | None,
    health: RegistryHealth,
    last_run_failed: bool,
    now: datetime,
) -> FleetRow:
    """One client's row: its reasons for attention, weighted."""
    settings = cfg.monitoring
    lineage, summary = scoring if scoring else ({}, None)
    numbers = (summary or {}).get("numbers", {})
    age = _age_days(lineage, now) if scoring else None
    failures = health.failures_in_a_row()
    reasons = {
        "last run failed": last_run_failed,
        "no champion": health.champion is None,
        "gate failed": failures >= settings.max_gate_failures,
        "accuracy drop": bool(summary and summary.get("accuracy_dropped")),
        "prediction drift": bool(summary and summary.get("prediction_drifted")),
        "input drift": bool(summary and summary.get("drifted_features")),
        "stale": age is not None and age > settings.stale_after_days,
        "never scored": scoring is None,
    }
    named = [r for r, on in reasons.items() if on]
    text = [f"gate failed {failures}x in a row" if r == "gate failed" else r for r in named]
    return FleetRow(
        client_id=cfg.client_id,
        attention=sum(WEIGHTS[r] for r in named),
        reasons=", ".join(text),
        champion=health.champion,
        scored_version=lineage.get("model_version"),
        days_since_scored=None if age is None else round(age, 1),
        gate_failures_in_a_row=failures,
        drifted_features=", ".join((summary or {}).get("drifted_features", [])),
        estimated_top5=numbers.get("monitor_estimated_top5"),
        estimated_top5_drop=numbers.get("monitor_estimated_top5_drop"),
    )


def fleet_frame(rows: Iterable[FleetRow]) -> pd.DataFrame:
    """The ranking: most attention first, then the largest estimated accuracy drop."""
    frame = pd.DataFrame([asdict(r) for r in rows])
    if frame.empty:
        return frame
    for column in ("champion", "scored_version"):
        frame[column] = frame[column].astype("Int64")
    frame["_drop"] = frame["estimated_top5_drop"].fillna(0.0)
    frame = frame.sort_values(["attention", "_drop", "client_id"], ascending=[False, False, True])
    return frame.drop(columns="_drop").reset_index(drop=True)


def fleet_table(
    clients: Mapping[str, ClientConfig],
    layout: DataLayout,
    settings: TrackingSettings,
    failed: Iterable[str] = (),
    now: datetime | None = None,
) -> pd.DataFrame:
    """Every client's row, ranked (see `fleet_frame`)."""
    now = now or datetime.now(timezone.utc)
    health = registry_health(settings)
    failed = set(failed)
    return fleet_frame(
        client_row(
            cfg,
            latest_scoring(layout, cid),
            health.get(cfg.model_name, RegistryHealth()),
            cid in failed,
            now,
        )
        for cid, cfg in clients.items()
    )


def write_fleet(frame: pd.DataFrame, path: Path) -> Path:
    """The ranking as Parquet (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(aside, index=False)
    aside.replace(path)
    return path
