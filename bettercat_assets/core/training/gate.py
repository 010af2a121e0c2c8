"""The champion/challenger quality gate: which metric judges a new model, its rules, the verdict.

The gate judges `top5_accuracy` on the held-out split. With at most 5 categories that metric is
1.0 for every model, so it cannot fail: such a client is judged on top-1 `accuracy` instead,
against the most-frequent-category baseline (`prior_accuracy`), and the lift must be more than
chance on the test split (a one-sided binomial test), since a few dozen test rows and a
baseline of 0.2 to 0.5 leave room for a model that learned nothing to come out ahead by luck.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bettercat_assets.core.config.clients import QualityGate
from bettercat_assets.core.config.rounding import round_float
from bettercat_assets.core.training.evaluation import (
    ACCURACY_BASELINE_METRIC,
    BASELINE_METRIC,
    GATE_METRIC,
)

#: The k of the gate's top-k metric: with this many categories or fewer it is always 1.0.
GATE_K = 5
#: The lift over the most-frequent-category baseline must be this unlikely under chance.
CHANCE_LEVEL = 0.05
#: The champion's value is measured on the new model's whole test split (the default basis).
SAME_SPLIT = "on the same test split"


@dataclass(frozen=True)
class GateMetric:
    """What judges a client's models: the metric, its baseline, and why this one."""

    name: str
    baseline: str
    #: How the baseline predicts, for the reason text.
    baseline_rule: str
    #: Whether `quality_gate.min_top5_accuracy` applies (it is a floor on top-5 accuracy).
    has_floor: bool
    #: Whether beating the baseline must also be more than chance (binomial test).
    tests_chance: bool
    #: Why this metric, when it is not the configured top-5 accuracy.
    note: str = ""


TOP5 = GateMetric(
    GATE_METRIC,
    BASELINE_METRIC,
    "the 5 most frequent training categories for every product",
    has_floor=True,
    tests_chance=False,
)


def gate_metric(n_classes: int) -> GateMetric:
    """Top-5 accuracy, or top-1 accuracy when top-5 cannot fail (at most 5 categories)."""
    if n_classes > GATE_K:
        return TOP5
    return GateMetric(
        "accuracy",
        ACCURACY_BASELINE_METRIC,
        "the most frequent training category for every product",
        has_floor=False,
        tests_chance=True,
        note=f"judged on accuracy: with {n_classes} categories {GATE_METRIC} is 1.0 for any model",
    )


@dataclass(frozen=True)
class GateResult:
    """Outcome of the quality gate for a newly trained model."""

    passed: bool
    metric: str
    value: float
    #: The floor on the metric (None: no floor applies to this metric).
    floor: float | None
    champion_version: int | None
    champion_value: float | None
    tolerance: float
    reason: str
    #: The baseline on the same test split (None: not computed or not applicable).
    baseline_value: float | None = None
    baseline_metric: str = BASELINE_METRIC
    #: Chance of a lift at least this large from a model no better than the baseline.
    p_value: float | None = None
    test_rows: int | None = None
    #: where the champion's value comes from (`ChampionScore.describe`)
    champion_basis: str = SAME_SPLIT
    #: the new model's metric on the rows the champion was scored on (None: `value`)
    challenger_value: float | None = None

    @property
    def verdict(self) -> str:
        return "passed" if self.passed else "failed"


def binomial_p_value(value: float, baseline: float, n: int) -> float:
    """P(X >= hits) for X ~ Binomial(n, baseline), hits = value * n: how likely a model that is
    right as often as the baseline scores at least `value` on `n` rows."""
    from scipy.stats import binom

    hits = round(value * n)
    return float(binom.sf(hits - 1, n, baseline))


def _usable_baseline(baseline_value: float | None, gate: QualityGate) -> float | None:
    if gate.min_lift_over_prior is None or baseline_value is None or math.isnan(baseline_value):
        return None
    return None if baseline_value >= 1.0 else baseline_value  # no headroom: cannot apply


def quality_gate(
    value: float,
    gate: QualityGate,
    champion_version: int | None = None,
    champion_value: float | None = None,
    baseline_value: float | None = None,
    *,
    metric: GateMetric = TOP5,
    test_rows: int | None = None,
    champion_basis: str = SAME_SPLIT,
    challenger_value: float | None = None,
) -> GateResult:
    """Pass when the metric meets the floor (top-5 only), beats its baseline (by more than
    chance, for accuracy with `test_rows`) and is not worse than the champion (scored on the
    same test split, or on the part of it the champion was not fit on: `challenger_value` is
    the new model's metric on those rows; `champion_basis` says which) beyond the tolerance.

    Why the baseline: the champion is re-scored on the *new* test split, so when the new data
    is broken (labels shuffled or mis-joined) the champion collapses too and "not worse than the
    champion" passes a model that learned nothing; such a model scores about the baseline.
    `gate.min_lift_over_prior` is the margin (default 0: strictly better); null turns it off.
    """
    baseline_value = _usable_baseline(baseline_value, gate)
    p_value = None
    if metric.tests_chance and baseline_value is not None and test_rows:
        p_value = binomial_p_value(value, baseline_value, test_rows)
    result = GateResult(
        passed=False,
        metric=metric.name,
        value=value,
        floor=gate.min_top5_accuracy if metric.has_floor else None,
        champion_version=champion_version,
        champion_value=champion_value,
        tolerance=gate.max_top5_regression,
        reason="",
        baseline_value=baseline_value,
        baseline_metric=metric.baseline,
        p_value=p_value,
        test_rows=test_rows,
        champion_basis=champion_basis,
        challenger_value=challenger_value,
    )
    problems = _gate_problems(result, gate, metric)
    if problems:
        reason = "; ".join(problems)
        if champion_value is not None and not _regressed(result):
            reason += f" (champion v{champion_version}: {champion_value:.4f} {champion_basis})"
    else:
        reason = _pass_reason(result)
    if metric.note:
        reason += f" ({metric.note})"
    return replace(result, passed=not problems, reason=reason)


def _compared(result: GateResult) -> float:
    """The new model's value on the champion's rows."""
    return result.value if result.challenger_value is None else result.challenger_value


def _regressed(result: GateResult) -> bool:
    champion = result.champion_value
    return champion is not None and _compared(result) < champion - result.tolerance


def _against_champion(result: GateResult) -> str:
    """`champion vN's 0.9000 <basis>`, with the new model's value there when it differs."""
    text = f"champion v{result.champion_version}'s {result.champion_value:.4f}"
    if result.challenger_value is not None:
        text += f" (this model: {result.challenger_value:.4f})"
    return f"{text} {result.champion_basis}"


def p_text(p_value: float) -> str:
    """`p = 0.0123`, or `p < 0.0001` rather than a p-value of 0."""
    return "p < 0.0001" if p_value < 0.0001 else f"p = {p_value:.4f}"


def _chance_text(result: GateResult) -> str:
    if result.p_value is None:
        return ""
    return f" beyond chance ({p_text(result.p_value)} on {result.test_rows} test rows)"


def _gate_problems(result: GateResult, gate: QualityGate, metric: GateMetric) -> list[str]:
    """Each rule the value breaks, as a sentence."""
    name, value, baseline = result.metric, result.value, result.baseline_value
    min_lift = gate.min_lift_over_prior or 0.0
    problems = []
    if result.floor is not None and value < result.floor:
        problems.append(f"{name} {value:.4f} is below the floor {result.floor:.4f}")
    by_chance = result.p_value is not None and result.p_value >= CHANCE_LEVEL
    if baseline is not None and (value - baseline <= min_lift or by_chance):
        margin = f" by more than {min_lift:.4f}" if min_lift else ""
        chance = (
            f"{margin} beyond chance ({p_text(result.p_value)} >= {CHANCE_LEVEL} on "
            f"{result.test_rows} test rows)"
            if result.p_value is not None
            else margin
        )
        problems.append(
            f"{name} {value:.4f} does not beat the {_baseline_name(name)} {baseline:.4f}"
            f"{chance} ({metric.baseline_rule})"
        )
    if _regressed(result):
        problems.append(
            f"{name} {value:.4f} is worse than {_against_champion(result)} by more than "
            f"{result.tolerance:.4f}"
        )
    return problems


def _baseline_name(metric: str) -> str:
    return "class-prior baseline" if metric == GATE_METRIC else "most-frequent-category baseline"


def _pass_reason(result: GateResult) -> str:
    """Why a passing value passes: every rule it meets."""
    passes = []
    if result.floor is not None:
        passes.append(f"meets the floor {result.floor:.4f}")
    if result.baseline_value is not None:
        passes.append(
            f"beats the {_baseline_name(result.metric)} {result.baseline_value:.4f}"
            f"{_chance_text(result)}"
        )
    if result.champion_value is not None:
        passes.append(f"is within {result.tolerance:.4f} of {_against_champion(result)}")
    if not passes:
        return f"{result.metric} {result.value:.4f}: no rule applies (no baseline, no champion)"
    listed = passes[0] if len(passes) == 1 else ", ".join(passes[:-1]) + " and " + passes[-1]
    return f"{result.metric} {result.value:.4f} {listed}"


def gate_check_metadata(gate: GateResult) -> dict[str, str | int | float]:
    """The quality-gate check's metadata, rounded; a value that does not exist (no earlier
    champion, no baseline, no floor) is left out rather than shown as 0 or NaN."""
    metadata: dict[str, str | int | float] = {
        "metric": gate.metric,
        "value": round_float(gate.value),
        "tolerance": gate.tolerance,
    }
    if gate.floor is not None:
        metadata["floor"] = gate.floor
    if gate.baseline_value is not None:
        metadata["baseline_metric"] = gate.baseline_metric
        metadata["baseline_value"] = round_float(gate.baseline_value)
    if gate.p_value is not None:
        metadata["p_value"] = round_float(gate.p_value)
        metadata["test_rows"] = int(gate.test_rows or 0)
    if gate.champion_version is not None:
        metadata["champion_version"] = int(gate.champion_version)
    if gate.champion_value is not None and not math.isnan(gate.champion_value):
        metadata["champion_value"] = round_float(gate.champion_value)
        metadata["champion_compared"] = gate.champion_basis
        if gate.challenger_value is not None:
            metadata["value_on_champion_rows"] = round_float(gate.challenger_value)
    return metadata
