"""Replay a demand trace through the reference service model with a policy in the loop.

Every `decision_interval_min` minutes the policy sees the window that just ended (and its
own state) and returns the thresholds for the next window — the same `decide` the pipeline's
threshold_decision calls. Nothing from the future reaches it, so a backtest of the first N
minutes of a trace gives the same decisions for those minutes as the whole trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write_json, atomic_write_text
from .policy import DEFAULT_BOUNDS, Observation, make_policy, threshold_grid
from .service_model import FIXED_BASELINE, AutoscaledService, ServiceParams, Thresholds, oracle_instances, \
    replay_totals, scale_factor_for_peak
from .traces import load_trace

DECISION_COLUMNS = ["window", "cpu_scale_up_threshold", "cpu_scale_down_threshold", "latency_threshold_ms",
                    "min_instances", "max_instances", "action", "reward"]


@dataclass
class BacktestResult:
    decisions: pd.DataFrame
    summary: dict[str, Any]


def _observation(out: dict[str, np.ndarray], start: pd.Timestamp, first_minute: int, thresholds: Thresholds,
                 params: ServiceParams, sla_target: float, budget: float) -> Observation:
    n = len(out["requests"])
    frame = pd.DataFrame({
        "ts": pd.date_range(start + pd.Timedelta(minutes=first_minute), periods=n, freq="1min"),
        "cpu_percent": out["utilisation_pct"],
        "p95_latency_ms": np.where(np.isfinite(out["p95_ms"]), out["p95_ms"], 10_000.0),
        "good": out["good"],
        "instance_count": out["ready"] + out["booting"],
        "cost_usd": out["cost_usd"],
        "request_rate_per_s": out["requests"] / 60.0,
    })
    return Observation(frame["ts"].iloc[0], frame, thresholds, {}, sla_target, budget, params.slo_p95_ms)


def simulate(requests: np.ndarray, policy, params: ServiceParams = ServiceParams(),
             start_thresholds: Thresholds = FIXED_BASELINE, start: pd.Timestamp | None = None,
             sla_target: float = 99.95, monthly_budget: float = 50.0, sim: AutoscaledService | None = None,
             policy_state: dict | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray], Thresholds, dict | None]:
    """Replay `requests` with the policy deciding after every window. Resumable: pass the
    service (`sim`), thresholds and policy state a previous call ended with. Returns the
    decisions, the per-minute outputs, and the thresholds and policy state it ends with."""
    start = start if start is not None else pd.Timestamp("2026-01-01", tz="UTC")
    sim = sim if sim is not None else AutoscaledService(params)
    thresholds, state = start_thresholds, policy_state
    rows, outs = [], []
    interval = params.decision_interval_min
    for lo in range(0, len(requests), interval):
        out = sim.run(requests[lo:lo + interval], thresholds)
        outs.append(out)
        decision = policy.decide(state, _observation(out, start, lo, thresholds, params, sla_target, monthly_budget))
        changed = [f"{a} {n}" for n, a in decision.actions.items() if a != "maintain"]
        rows.append({"window": (start + pd.Timedelta(minutes=lo)).isoformat(), **thresholds.to_dict(),
                     "action": "; ".join(changed) or "maintain", "reward": round(decision.reward, 6),
                     "phase": decision.phase, "reason": decision.reason})
        thresholds, state = decision.thresholds, decision.new_state
    merged = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}
    return pd.DataFrame(rows), merged, thresholds, state


def shadow_replay(requests: np.ndarray, policy, carried: dict | None, start: pd.Timestamp,
                  params: ServiceParams = ServiceParams(), sla_target: float = 99.95,
                  monthly_budget: float = 50.0) -> tuple[dict[str, float], dict]:
    """One more stretch of demand (e.g. a day) through the policy and, beside it, the fixed
    80/30 baseline, each continuing from `carried` (what the previous stretch ended with; None
    starts both fresh at 80/30). Returns that stretch's figures and the state to carry on."""
    carried = carried or {}
    sim = AutoscaledService(params, carried.get("sim"))
    fixed = AutoscaledService(params, carried.get("fixed_sim"))
    thresholds = Thresholds.from_dict(carried["thresholds"]) if carried.get("thresholds") else FIXED_BASELINE
    _, out, thresholds, policy_state = simulate(requests, policy, params, thresholds, start, sla_target,
                                                monthly_budget, sim=sim, policy_state=carried.get("policy"))
    base = fixed.run(requests, FIXED_BASELINE)
    figures = {"minutes": int(len(requests)), "good_minutes": int(np.sum(out["good"])) if out else 0,
               "cost": float(np.sum(out["cost_usd"])) if out else 0.0, "oracle_cost": oracle_cost(requests, params),
               "fixed_good_minutes": int(np.sum(base["good"])), "fixed_cost": float(np.sum(base["cost_usd"]))}
    return figures, {"sim": sim.state, "fixed_sim": fixed.state, "thresholds": thresholds.to_dict(),
                     "policy": policy_state}


def _figures(out: dict[str, np.ndarray], oracle_cost: float) -> dict[str, float]:
    minutes = int(len(out["good"]))
    good = int(np.sum(out["good"]))
    cost = float(np.sum(out["cost_usd"]))
    return {"minutes": minutes, "good_minutes": good, "sla": 100.0 * good / minutes if minutes else float("nan"),
            "cost": round(cost, 6), "oracle_cost": round(oracle_cost, 6),
            "cost_over_oracle": round(cost / oracle_cost, 6) if oracle_cost else float("nan")}


def oracle_cost(requests: np.ndarray, params: ServiceParams) -> float:
    return sum(oracle_instances(r / 60.0, params) for r in requests) * params.price_per_instance_hour / 60.0


def allowed_bad_minutes(minutes: int, sla_target: float) -> int:
    """The most bad minutes a stretch of `minutes` may hold and still meet `sla_target` (%)."""
    return math.floor(minutes * (1 - sla_target / 100) + 1e-9)  # 1e-9: 20,000 x 0.05 % is 10, not 9


def hindsight_best(requests: np.ndarray, params: ServiceParams = ServiceParams(), sla_target: float = 99.95,
                   candidates: list[Thresholds] | None = None) -> tuple[Thresholds, bool]:
    """The fixed thresholds a user would have picked knowing the whole trace: the cheapest pair of
    `threshold_grid` whose replay keeps `sla_target`, and True; if none does, the pair with the
    fewest bad minutes, and False. The yardstick a learning policy is measured against."""
    candidates = candidates or threshold_grid()
    bad, cost = replay_totals(requests, candidates, params)
    allowed = allowed_bad_minutes(len(requests), sla_target)
    feasible = [i for i in range(len(candidates)) if bad[i] <= allowed]
    if feasible:
        return candidates[min(feasible, key=lambda i: (cost[i], bad[i]))], True
    return candidates[min(range(len(candidates)), key=lambda i: (bad[i], cost[i]))], False


def run_backtest(requests_per_min: np.ndarray, policy, params: ServiceParams = ServiceParams(),
                 scale: float | None = None, peak_instances: float = 40, start_thresholds: Thresholds = FIXED_BASELINE,
                 start: pd.Timestamp | None = None, missing_minutes: int = 0,
                 sla_target: float = 99.95) -> BacktestResult:
    raw = np.asarray(requests_per_min, dtype=float)
    factor = float(scale) if scale is not None else scale_factor_for_peak(raw, peak_instances, params)
    requests = raw * factor
    decisions, out, _, _ = simulate(requests, policy, params, start_thresholds, start, sla_target)
    oracle = oracle_cost(requests, params)
    fixed = AutoscaledService(params).run(requests, FIXED_BASELINE)
    summary = {**_figures(out, oracle), "missing_minutes": int(missing_minutes), "scale": factor,
               "policy": getattr(policy, "name", type(policy).__name__),
               "fixed_baseline": _figures(fixed, oracle)}
    summary["saving_vs_fixed_percent"] = round(100.0 * (1 - summary["cost"] / summary["fixed_baseline"]["cost"]), 3)
    best, keeps_sla = hindsight_best(requests, params, sla_target)
    summary["hindsight_best"] = {"cpu_scale_up_threshold": best.cpu_scale_up_threshold,
                                 "cpu_scale_down_threshold": best.cpu_scale_down_threshold, "keeps_sla": keeps_sla,
                                 **_figures(AutoscaledService(params).run(requests, best), oracle)}
    return BacktestResult(decisions, summary)


def write_backtest_outputs(result: BacktestResult, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "decisions.csv", result.decisions.to_csv(index=False), mode=0o644)
    atomic_write_json(out_dir / "summary.json", result.summary, mode=0o644)


def backtest_main(trace: str, policy: str = "learned", peak_instances: float | None = None, scale: float | None = None,
                  out: str = "backtest_out", learning_rate: float = 0.05, timestamp_column: str | None = None,
                  count_column: str | None = None, date_order: str | None = None) -> dict[str, Any]:
    t = load_trace(trace, timestamp_column, count_column, date_order)
    result = run_backtest(t.requests, make_policy(policy, learning_rate=learning_rate, bounds=DEFAULT_BOUNDS),
                          scale=scale, peak_instances=peak_instances or 40, start=t.start,
                          missing_minutes=t.missing_minutes)
    # What was read, so a surprising result can be traced to a misread column or step.
    result.summary["trace"] = {"timestamp_column": t.timestamp_column, "count_column": t.count_column,
                               "step_minutes": t.step_minutes, "first_minute": t.start.isoformat()}
    write_backtest_outputs(result, out)
    return result.summary
