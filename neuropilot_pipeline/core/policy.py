"""Threshold policies: one implementation behind the backtest, policy_backtest and threshold_decision.

A policy sees only the past (the window's per-minute metrics, the thresholds in force, the
anomaly counts, its own state) and returns new thresholds, which always pass through
`apply_guardrails` (bounds, step limit, consistency) before anyone uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .reward import window_reward
from .service_model import Thresholds

NAMES = Thresholds.names()
INTEGER = {"min_instances", "max_instances"}
# The scale-down threshold must stay this far below scale-up, or the autoscaler flaps.
MIN_UP_DOWN_GAP = 10.0


@dataclass(frozen=True)
class Bounds:
    min: float
    max: float
    max_step: float


DEFAULT_BOUNDS: dict[str, Bounds] = {
    "cpu_scale_up_threshold": Bounds(50, 95, 10),
    "cpu_scale_down_threshold": Bounds(10, 70, 10),
    "latency_threshold_ms": Bounds(100, 1000, 50),
    "min_instances": Bounds(1, 20, 2),
    "max_instances": Bounds(10, 500, 20),
}


def _finite(x: Any, fallback: float) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return fallback
    return v if math.isfinite(v) else fallback


def apply_guardrails(current: Thresholds, proposed: Thresholds | Mapping[str, Any],
                     bounds: Mapping[str, Bounds] = DEFAULT_BOUNDS) -> Thresholds:
    """Clamp to bounds, limit each change to max_step, keep down < up - gap and min <= max.
    Anything non-numeric or non-finite in `proposed` means "keep the current value"."""
    prop = proposed.to_dict() if isinstance(proposed, Thresholds) else dict(proposed)
    cur = current.to_dict()
    out = {}
    for name in NAMES:
        b = bounds[name]
        c = min(max(_finite(cur[name], b.min), b.min), b.max)
        v = _finite(prop.get(name, c), c)
        v = min(max(v, c - b.max_step), c + b.max_step)
        v = min(max(v, b.min), b.max)
        out[name] = float(round(v)) if name in INTEGER else round(v, 3)
    up_b, down_b = bounds["cpu_scale_up_threshold"], bounds["cpu_scale_down_threshold"]
    if out["cpu_scale_down_threshold"] > out["cpu_scale_up_threshold"] - MIN_UP_DOWN_GAP:
        out["cpu_scale_down_threshold"] = max(down_b.min, out["cpu_scale_up_threshold"] - MIN_UP_DOWN_GAP)
        if out["cpu_scale_down_threshold"] > out["cpu_scale_up_threshold"] - MIN_UP_DOWN_GAP:
            out["cpu_scale_up_threshold"] = min(up_b.max, out["cpu_scale_down_threshold"] + MIN_UP_DOWN_GAP)
    if out["min_instances"] > out["max_instances"]:
        out["min_instances"] = out["max_instances"]
    return Thresholds.from_dict(out)


@dataclass
class Observation:
    """What a policy may see at a decision point: the past only."""

    window_start: pd.Timestamp
    minutes: pd.DataFrame  # ts, cpu_percent, p95_latency_ms, good, instance_count, cost_usd, request_rate_per_s
    thresholds: Thresholds
    anomaly_counts: Mapping[str, int] = field(default_factory=dict)
    sla_target: float = 99.95
    monthly_budget: float = 50.0
    slo_p95_ms: float = 250.0


@dataclass
class Decision:
    thresholds: Thresholds
    actions: dict[str, str]
    reason: str
    reward: float
    phase: str
    new_state: dict[str, Any]


def _actions(old: Thresholds, new: Thresholds) -> dict[str, str]:
    acts = {}
    for n in NAMES:
        a, b = getattr(old, n), getattr(new, n)
        acts[n] = "increase" if b > a else "decrease" if b < a else "maintain"
    return acts


def _window_reward(obs: Observation) -> tuple[float, float, bool]:
    m = obs.minutes
    sla = 100.0 * float(np.mean(m["good"])) if len(m) else float("nan")
    r = window_reward(sla, obs.sla_target, float(m["cost_usd"].sum()), obs.monthly_budget, max(1, len(m)))
    return r.reward, sla, r.sla_met


class FixedPolicy:
    name = "fixed"

    def __init__(self, bounds: Mapping[str, Bounds] = DEFAULT_BOUNDS, **_: Any):
        self.bounds = bounds

    def decide(self, state: dict | None, obs: Observation) -> Decision:
        reward, sla, _ = _window_reward(obs)
        return Decision(obs.thresholds, _actions(obs.thresholds, obs.thresholds), "fixed thresholds: no change",
                        reward, "fixed", dict(state or {}))


class RulePolicy:
    """The seed's starting rule, made safe: SLA missed -> lower the CPU thresholds (scale out
    sooner); SLA met and cost over budget -> raise them (scale less), unless latency already
    came close to the SLO; latency anomalies while the SLA is at risk -> tighten the latency
    threshold. The latency threshold never goes below 1.25x the window's median p95, since
    below its normal latency the autoscaler would scale out forever."""

    name = "rule"

    def __init__(self, bounds: Mapping[str, Bounds] = DEFAULT_BOUNDS, step: float = 5.0, latency_step: float = 25.0,
                 **_: Any):
        self.bounds = bounds
        self.step = step
        self.latency_step = latency_step

    def decide(self, state: dict | None, obs: Observation) -> Decision:
        reward, sla, met = _window_reward(obs)
        m = obs.minutes
        t = obs.thresholds.to_dict()
        projected = float(m["cost_usd"].sum()) * 30 * 24 * 60 / max(1, len(m))
        p95 = m["p95_latency_ms"].replace([np.inf, -np.inf], np.nan)
        median_p95 = float(p95.median()) if p95.notna().any() else obs.slo_p95_ms
        worst_p95 = float(p95.quantile(0.99)) if p95.notna().any() else obs.slo_p95_ms
        at_risk = (not met) or worst_p95 > 0.8 * obs.slo_p95_ms
        reasons = []
        if not met:
            t["cpu_scale_up_threshold"] -= self.step
            t["cpu_scale_down_threshold"] -= self.step
            reasons.append(f"SLA {sla:.3f} % < target {obs.sla_target} %: lower CPU thresholds to scale out sooner")
        elif projected > obs.monthly_budget and not at_risk:
            t["cpu_scale_up_threshold"] += self.step
            t["cpu_scale_down_threshold"] += self.step
            reasons.append(f"SLA {sla:.3f} % met and cost ${projected:.0f}/month > budget ${obs.monthly_budget:.0f}: "
                           "raise CPU thresholds to scale less")
        elif projected > obs.monthly_budget:
            reasons.append(f"cost ${projected:.0f}/month > budget but p99 latency {worst_p95:.0f} ms is near the "
                           f"{obs.slo_p95_ms:.0f} ms SLO: hold the CPU thresholds")
        latency_anomalies = int(obs.anomaly_counts.get("latency", 0))
        floor = 1.25 * median_p95
        if latency_anomalies and at_risk:
            t["latency_threshold_ms"] = max(t["latency_threshold_ms"] - self.latency_step, floor)
            reasons.append(f"{latency_anomalies} latency anomalies with the SLA at risk: tighten the latency threshold "
                           f"(not below {floor:.0f} ms, 1.25x the median p95)")
        elif t["latency_threshold_ms"] < max(floor, obs.slo_p95_ms) and not at_risk:
            t["latency_threshold_ms"] = min(t["latency_threshold_ms"] + self.latency_step, max(floor, obs.slo_p95_ms))
            reasons.append("latency calm: relax the latency threshold back towards the SLO")
        new = apply_guardrails(obs.thresholds, t, self.bounds)
        reason = "; ".join(reasons) or f"SLA {sla:.3f} % met and cost within budget: maintain"
        return Decision(new, _actions(obs.thresholds, new), reason, reward, "rule", dict(state or {}))


def make_policy(name: str, **settings: Any):
    if name == "fixed":
        return FixedPolicy(**settings)
    if name == "rule":
        return RulePolicy(**settings)
    raise ValueError(f"unknown policy {name!r}: use 'rule' or 'fixed'")
