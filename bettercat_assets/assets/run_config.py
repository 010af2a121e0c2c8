"""Run configuration for the assets: the training/inference date (default: today, UTC)."""

from datetime import date, datetime, timezone

from dagster import Config
from pydantic import Field


class DatedRunConfig(Config):
    """Optional date for the run; the MLflow run name and the output folder carry it."""

    day: str | None = Field(None, description="YYYY-MM-DD; default today (UTC)")

    def resolved_day(self) -> date:
        return date.fromisoformat(self.day) if self.day else datetime.now(timezone.utc).date()
