"""Reward of one window: SLA compliance minus cost variance (the seed's), or a weighted mix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

MINUTES_PER_MONTH = 30 * 24 * 60
WEIGHT_KEYS = ("sla", "cost", "latency", "availability")


class RewardConfigError(ValueError):
    pass


@dataclass(frozen=True)
class WindowReward:
    sla_percent: float
    sla_met: bool
    window_cost: float
    projected_monthly_cost: float
    cost_variance: float
    reward: float
    formula: str


def sla_percent(good) -> float:
    good = list(good) if not hasattr(good, "mean") else good
    n = len(good)
    return 100.0 * float(sum(bool(g) for g in good)) / n if n else float("nan")


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    unknown = set(weights) - set(WEIGHT_KEYS)
    if unknown:
        raise RewardConfigError(f"unknown reward weights {sorted(unknown)}; use {list(WEIGHT_KEYS)}")
    w = {k: float(weights.get(k, 0.0)) for k in WEIGHT_KEYS}
    if any(v < 0 or not math.isfinite(v) for v in w.values()) or abs(sum(w.values()) - 1.0) > 1e-6:
        raise RewardConfigError(f"reward weights must be >= 0 and sum to 1, got {w} (sum {sum(w.values()):g})")
    return w


def window_reward(sla_pct: float, sla_target: float, window_cost: float, monthly_budget: float, window_minutes: int,
                  weights: Mapping[str, float] | None = None, latency_p95_ms: float | None = None,
                  slo_p95_ms: float | None = None, availability_pct: float | None = None) -> WindowReward:
    """Seed default: (1 if SLA >= target else 0) - |projected monthly cost - budget| / budget,
    the window's cost projected to a 30-day month. With `weights` (sla, cost, latency,
    availability, summing to 1) each objective is scored in [0, 1] and mixed instead."""
    if monthly_budget <= 0:
        raise RewardConfigError("cost_budget must be > 0")
    projected = window_cost * MINUTES_PER_MONTH / max(1, window_minutes)
    variance = abs(projected - monthly_budget) / monthly_budget
    met = bool(sla_pct >= sla_target)
    if not weights:
        return WindowReward(sla_pct, met, window_cost, projected, variance, (1.0 if met else 0.0) - variance,
                            "(1 if SLA >= target else 0) - |cost - budget| / budget")
    w = validate_weights(weights)
    latency_score = 1.0
    if latency_p95_ms is not None and slo_p95_ms:
        latency_score = max(0.0, min(1.0, 1.0 - max(0.0, latency_p95_ms - slo_p95_ms) / slo_p95_ms))
    availability_score = (availability_pct / 100.0) if availability_pct is not None else sla_pct / 100.0
    value = (w["sla"] * (1.0 if met else 0.0) + w["cost"] * max(0.0, 1.0 - variance)
             + w["latency"] * latency_score + w["availability"] * availability_score)
    return WindowReward(sla_pct, met, window_cost, projected, variance, value,
                        "weighted: " + ", ".join(f"{k} {v:g}" for k, v in w.items()))
