"""The `monitoring` block of `clients.yaml` (under `defaults` and per client)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Monitoring(BaseModel):
    """How a client's scorings are compared with its model's reference profile (docs/monitoring.md)."""

    model_config = ConfigDict(extra="forbid")

    #: Compare each scoring with the model's reference (false: no monitoring checks or numbers).
    enabled: bool = True
    #: Quantile bins per numeric feature in the reference profile (made at training).
    bins: int = Field(10, ge=2, le=50)
    #: Chance that one scoring of an unchanged catalogue warns on any signal (split over them).
    false_alarm_rate: float = Field(0.01, gt=0.0, lt=0.5)
    #: Drift below this PSI never warns, however many products (large tenants, tiny shifts).
    min_psi: float = Field(0.05, ge=0.0)
    #: Estimated top-5 drops below this never warn, however many products.
    min_accuracy_drop: float = Field(0.03, ge=0.0, le=1.0)
    #: The fleet view flags a client not scored for longer than this.
    stale_after_days: int = Field(7, ge=1)
    #: The fleet view flags this many failed gates in a row.
    max_gate_failures: int = Field(3, ge=1)
    #: Retrain (declarative automation) once drift warns; at most once per new training data.
    retrain_on_drift: bool = False
