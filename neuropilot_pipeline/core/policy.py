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
from .service_model import FIXED_BASELINE, Thresholds

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


REWARD_FLOOR = 1e6


def _finite(x: Any, fallback: float) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return fallback
    return v if math.isfinite(v) else fallback


def _within(v: float, lo: float, hi: float, integer: bool) -> float:
    """Round (to a whole number, or to 3 decimals) without leaving [lo, hi]."""
    if integer:
        r = float(round(v))
        return r if lo <= r <= hi else float(math.ceil(lo)) if r < lo else float(math.floor(hi))
    r = round(v, 3)
    return r if lo <= r <= hi else math.ceil(lo * 1000) / 1000 if r < lo else math.floor(hi * 1000) / 1000


def apply_guardrails(current: Thresholds, proposed: Thresholds | Mapping[str, Any],
                     bounds: Mapping[str, Bounds] = DEFAULT_BOUNDS) -> Thresholds:
    """Clamp to bounds, limit each change to max_step, keep down <= up - gap and min <= max.
    Anything non-numeric or non-finite in `proposed` means "keep the current value". Bounds and
    the step limit always hold; the two pair constraints are met as far as one step allows."""
    prop = proposed.to_dict() if isinstance(proposed, Thresholds) else dict(proposed)
    cur = current.to_dict()
    lo, hi, out = {}, {}, {}
    for name in NAMES:
        b = bounds[name]
        c = min(max(_finite(cur[name], b.min), b.min), b.max)
        lo[name], hi[name] = max(b.min, c - b.max_step), min(b.max, c + b.max_step)
        v = _finite(prop.get(name, c), c)
        out[name] = _within(min(max(v, lo[name]), hi[name]), lo[name], hi[name], name in INTEGER)

    def pull(name: str, target: float) -> None:
        out[name] = _within(min(max(target, lo[name]), hi[name]), lo[name], hi[name], name in INTEGER)

    up, down = "cpu_scale_up_threshold", "cpu_scale_down_threshold"
    if out[down] > out[up] - MIN_UP_DOWN_GAP:
        pull(down, out[up] - MIN_UP_DOWN_GAP)
        if out[down] > out[up] - MIN_UP_DOWN_GAP:
            pull(up, out[down] + MIN_UP_DOWN_GAP)
    if out["min_instances"] > out["max_instances"]:
        pull("min_instances", out["max_instances"])
        if out["min_instances"] > out["max_instances"]:
            pull("max_instances", out["min_instances"])
    return Thresholds.from_dict(out)


def threshold_grid(bounds: Mapping[str, Bounds] = DEFAULT_BOUNDS, step: float = 5.0,
                   others: Thresholds | None = None) -> list[Thresholds]:
    """Every (scale-up, scale-down) pair on a `step`-point grid within the bounds that keeps the
    minimum gap; the other thresholds as in `others` (the fixed 80/30 baseline's by default).
    The learned policy chooses among these, and the hindsight yardstick is the best of them."""
    others = others or FIXED_BASELINE
    up_b, down_b = bounds["cpu_scale_up_threshold"], bounds["cpu_scale_down_threshold"]
    return [Thresholds(float(up), float(down), others.latency_threshold_ms, others.min_instances, others.max_instances)
            for up in np.arange(up_b.min, up_b.max + step / 2, step)
            for down in np.arange(down_b.min, min(down_b.max, up - MIN_UP_DOWN_GAP) + step / 2, step)]


class PolicyStateError(ValueError):
    """The carried policy state is not what a policy wrote: refused, never trusted."""


def _state_number(state: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = state.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise PolicyStateError(f"policy state key {key!r} holds {value!r}, expected a number in [{low:g}, {high:g}]. "
                               "Delete the policy state file named in the error above it and re-materialize "
                               "threshold_decision from that window on.")
    return float(value)


def _state_vector(value: Any, dtype: type, kinds: str, types: set[type]) -> np.ndarray | None:
    """A carried per-minute history as an array of `dtype`: a 1-D array of dtype kinds `kinds`
    (as a stored state holds it) or a list of exactly `types` (as a state in memory does); None
    if it is neither. type() rather than isinstance: bool is an int subclass and must not pass.
    This runs over days of minutes for every service at every decision, so the checks are vectorised."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in kinds:
        return value.astype(dtype, copy=False)
    if isinstance(value, list) and set(map(type, value)) <= types:
        try:
            return np.asarray(value, dtype=dtype)
        except OverflowError:  # an int too large for the dtype
            return None
    return None


def _state_demand(state: Mapping[str, Any]) -> np.ndarray:
    arr = _state_vector(state.get("demand", []), float, "fiu", {float, int})
    if arr is None or not np.isfinite(arr).all() or (arr < 0).any():
        raise PolicyStateError("policy state key 'demand' must be a list of finite demands >= 0. Delete the policy "
                               "state file and re-materialize threshold_decision from that window on.")
    return arr


def _state_error_budget(state: Mapping[str, Any]) -> list[list[int]]:
    """The carried [minutes, bad minutes] of each earlier window in the SLO period."""
    record = state.get("error_budget", [])
    ok = isinstance(record, list) and all(
        isinstance(w, list) and len(w) == 2 and all(type(x) is int for x in w) and 0 <= w[1] <= w[0]
        for w in record)
    if not ok:
        raise PolicyStateError("policy state key 'error_budget' must be a list of [minutes, bad minutes] pairs of "
                               "whole numbers with 0 <= bad <= minutes. Delete the policy state file and "
                               "re-materialize threshold_decision from that window on.")
    return [list(w) for w in record]


def _state_fleet(state: Mapping[str, Any]) -> np.ndarray:
    """The carried fleet (instances) at each minute of the demand history; -1 where unknown."""
    arr = _state_vector(state.get("fleet", []), np.int64, "iu", {int})
    if arr is None or (arr < -1).any():
        raise PolicyStateError("policy state key 'fleet' must be a list of instance counts (whole numbers >= 0, "
                               "or -1 where unknown). Delete the policy state file and re-materialize "
                               "threshold_decision from that window on.")
    return arr


def observed_fleet(minutes: pd.DataFrame) -> np.ndarray:
    """Instances (ready + booting) in each minute of a window; -1 where missing or impossible."""
    with np.errstate(invalid="ignore"):
        count = pd.to_numeric(minutes["instance_count"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(count) & (count >= 0) & (count < 1e9)
    fleet = np.full(len(count), -1, dtype=np.int64)
    fleet[ok] = np.round(count[ok])
    return fleet


def observed_demand(minutes: pd.DataFrame) -> np.ndarray:
    """Requests per minute seen in a window; a missing or impossible sample counts as no demand
    (the source checks refuse impossible values first; this keeps the replay sane regardless)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rate = pd.to_numeric(minutes["request_rate_per_s"], errors="coerce").to_numpy(dtype=float) * 60.0
    rate = np.where(np.isfinite(rate) & (rate >= 0), rate, 0.0)
    return np.round(np.minimum(rate, 1e12), 3)


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
    sla = 100.0 * float(np.mean(m["good"].astype(bool))) if len(m) else float("nan")
    cost = pd.to_numeric(m["cost_usd"], errors="coerce").to_numpy(dtype=float)
    cost = float(np.sum(np.where(np.isfinite(cost) & (cost >= 0), np.minimum(cost, 1e12), 0.0)))
    r = window_reward(sla, obs.sla_target, cost, obs.monthly_budget, max(1, len(m)))
    # Bounded, so one absurd window cannot poison the running average the state carries.
    reward = min(max(r.reward, -REWARD_FLOOR), 1.0) if math.isfinite(r.reward) else -REWARD_FLOOR
    return reward, sla, r.sla_met


def budget_burn_rate(minutes: pd.DataFrame, sla_target: float) -> float:
    """How fast the window spent the error budget, as a multiple of the rate the SLA target
    allows: bad minutes / minutes / (1 - target). 1 spends exactly the budget over any period."""
    if not len(minutes):
        return 0.0
    bad_share = 1.0 - float(np.mean(minutes["good"].astype(bool)))
    return bad_share / max(1e-12, 1.0 - sla_target / 100.0)


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


class LearningPolicy:
    """Learns which thresholds would have served the recent past best, and how cautious to be.

    Every `evaluate_every` (2) decisions, 12 hours, it replays the demand it has seen (the last
    `history_days`, 30: the SLO period) through the reference service model under each
    candidate (scale-up, scale-down) pair, and picks the cheapest candidate whose replay kept
    the SLA with a safety margin; the guardrails then move the thresholds towards it by at most
    one step, and in between it keeps course towards that target (a page acts at once). It only
    ever uses the past, so a backtest or a backfill replays it exactly. Replaying every other
    window halves the work of a 30-day replay for the same result on WorldCup98 (1.308x the
    oracle against 1.309x, all 25 cuts kept); once a day (4) misses 4 of the 25 cuts.

    Candidates: "tracking" pairs first, every scale-up threshold on a 1-point grid with its
    scale-down threshold the minimum gap (10) below it, so the fleet follows demand as closely
    as the guardrails allow. On the reference model the scale-up threshold sets the risk (each
    surge must fit the headroom it leaves while new instances boot) and the scale-down
    threshold the cost (how long instances outlive the demand that called them); on WorldCup98
    at 40 peak instances the cheapest pair for every scale-up threshold is the tracking one
    wherever its bad minutes allow. One knob on a fine grid lets the policy stop just short of
    the risk it can afford, where the 5-point grid of pairs jumps from 80/60 (13 bad minutes,
    1.314x the oracle) to 75/65 (3, 1.360x). When no tracking pair keeps the SLA in replay,
    as under batch bursts that outgrow any fleet that sheds between them, it widens the
    search to every pair on the 5-point grid: low scale-down thresholds keep instances
    between bursts.

    Keeping the SLA in replay means two things. Its bad minutes stay within the replay's share
    of the error budget, and so do its near misses, at `near_miss_allowance` (3) times that
    share: minutes whose p95 came within `near_miss_share_of_slo` (80 %) of the SLO, or whose
    ready instances ran over `near_miss_utilisation` (92 %) busy. Bad minutes arrive in clumps
    of 4 to 8 when a surge outruns the 4 minutes an instance takes to serve, and a few calm days
    of replay often hold none, so on bad minutes alone an aggressive pair looks safe until the
    surge arrives. Near misses show how close a pair runs to that edge. The p95 line warns on
    small fleets (WorldCup98 at 20 peak instances: 4 minutes over 200 ms for each bad minute);
    on large ones the pooled queue's p95 stays low until the fleet is nearly saturated (at 80
    peak: 1.1 for each), so there utilisation is the warning.

    It also spends error budget it has saved, as an SRE error-budget policy does: of the budget
    left unspent over the SLO period (`slo_period_days`, 30, rolling), beyond a reserve of
    `budget_reserve_days` (4) days' allowance, it adds `budget_spend_share` (three quarters) to
    what each replay may spend.

    What it learns online from its rewards is its caution `risk` in [`min_risk`, 1]: the share
    of the error budget it refuses to spend in replays (0.4 to begin with and at rest). When
    the SLA is at risk — the window burnt the error budget at `page_burn_rate` (6) times the
    rate the target allows or faster (5 % of a 30-day budget in 6 hours, the Google SRE
    workbook's paging threshold for a 6-hour window) while the SLO period's budget so far is
    overspent — it scales more first (both CPU thresholds down half a step, 5 points), raises
    its caution a quarter of the way to 1, and learns later. A miss that leaves the period
    within its budget is not an emergency: its demand goes into the replays like any other,
    and the 30-day replay keeps the surge in view for a month. Every window that does not page
    moves the caution back towards `min_risk` by `learning_rate` (0.05) of the distance.

    Measured (README, "Policy backtest"): on WorldCup98 at 40 peak instances 1.308x the
    oracle at 13 bad minutes of the 15 allowed, against 1.352x for the policy before
    2026-12-08 (3-day replays on the 5-point grid, caution from 0.5 down by 1 % a window,
    pages on any window burning at 6x, a full step down and caution halfway to 1: each page
    held the thresholds 10 points down for days); all 25 cuts and scales of that trace keep
    99.95 %, at 1.010x their hindsight best (1.044x before).

    Phases follow the seed's rollout: days 1-7 "exploration" (its demand history is filling;
    it moves at half step when `explore_half_step` is set, which on WorldCup98 costs 0.5 %:
    1.316x, the same 25 cuts kept), days 8-14 "learning", then "exploitation". Replays
    compare every candidate on the same past, so it needs no random trials to learn what the
    others would have done.

    Until it has seen `min_history_to_raise_scale_up` minutes of demand (a day) it never raises
    the scale-up threshold, which takes away headroom: a replay of a few hours has not seen the
    daily peak. On WorldCup98 its first hours' replays led it from 80 to 90, and the 6 bad
    minutes of that first day were 40 % of the trace's error budget.
    """

    name = "learned"
    CANDIDATE_STEP = 5.0  # the wide grid of pairs, searched when no tracking pair keeps the SLA
    TRACKING_STEP = 1.0

    def __init__(self, bounds: Mapping[str, Bounds] = DEFAULT_BOUNDS, learning_rate: float = 0.05,
                 history_days: float = 30.0, initial_risk: float = 0.4, min_risk: float = 0.4, params: Any = None,
                 explore_half_step: bool = False, evaluate_every: int = 2,
                 min_history_to_raise_scale_up: int = 1440, page_burn_rate: float = 6.0,
                 page_step_share: float = 0.5, page_caution_raise: float = 0.25,
                 near_miss_share_of_slo: float = 0.8, near_miss_utilisation: float = 0.92,
                 near_miss_allowance: float = 3.0,
                 slo_period_days: float = 30.0, budget_reserve_days: float = 4.0, budget_spend_share: float = 0.75,
                 **_: Any):
        from .service_model import ServiceParams

        self.bounds = bounds
        self.learning_rate = float(learning_rate)
        self.history_minutes = int(history_days * 1440)
        self.initial_risk = initial_risk
        self.min_risk = float(min_risk)
        self.params = params or ServiceParams()
        self.explore_half_step = explore_half_step
        self.evaluate_every = max(1, int(evaluate_every))
        self.min_history_to_raise_scale_up = int(min_history_to_raise_scale_up)
        self.page_burn_rate = float(page_burn_rate)
        self.page_step_share = float(page_step_share)
        self.page_caution_raise = float(page_caution_raise)
        self.near_miss_share_of_slo = float(near_miss_share_of_slo)
        self.near_miss_utilisation = float(near_miss_utilisation)
        self.near_miss_allowance = float(near_miss_allowance)
        self.slo_period_minutes = int(slo_period_days * 1440)
        self.budget_reserve_days = float(budget_reserve_days)
        self.budget_spend_share = float(budget_spend_share)

    @staticmethod
    def phase_for(day: int) -> str:
        return "exploration" if day < 7 else "learning" if day < 14 else "exploitation"

    def candidates(self, current: Thresholds) -> list[Thresholds]:
        """The tracking pairs the configured bounds allow: every scale-up threshold on a
        1-point grid, its scale-down threshold the minimum gap below it (or at the scale-down
        bound, if that is lower); 46 with the default bounds."""
        up_b, down_b = self.bounds["cpu_scale_up_threshold"], self.bounds["cpu_scale_down_threshold"]
        pairs = []
        for up in np.arange(math.ceil(up_b.min), up_b.max + self.TRACKING_STEP / 2, self.TRACKING_STEP):
            down = min(float(down_b.max), float(up) - MIN_UP_DOWN_GAP)
            if down >= down_b.min and (float(up), down) not in pairs:
                pairs.append((float(up), down))
        return [Thresholds(up, down, current.latency_threshold_ms, current.min_instances, current.max_instances)
                for up, down in pairs]

    def wide_candidates(self, current: Thresholds) -> list[Thresholds]:
        """Every other pair the bounds allow on a 5-point grid (the hindsight yardstick's grid):
        searched only when no tracking pair keeps the SLA. A grid wider than a user's bounds
        would head for pairs the guardrails then clip into one the replay never judged."""
        tracking = {(c.cpu_scale_up_threshold, c.cpu_scale_down_threshold) for c in self.candidates(current)}
        return [c for c in threshold_grid(self.bounds, self.CANDIDATE_STEP, current)
                if (c.cpu_scale_up_threshold, c.cpu_scale_down_threshold) not in tracking]

    def _relax(self, risk: float) -> float:
        """A window that did not page: the caution moves `learning_rate` of the way back to its floor."""
        return self.min_risk + (risk - self.min_risk) * (1.0 - self.learning_rate)

    def replay(self, demand: np.ndarray, candidates: list[Thresholds],
               first_fleet: int | None = None) -> list[tuple[int, float, int]]:
        """Bad minutes, cost and near misses of the demand replayed under each candidate (one
        compiled pass), starting from `first_fleet` instances (unknown: the first minute's oracle fleet)."""
        from .service_model import replay_with_near_misses

        # An unknown fleet (-1) starts from the oracle's; a known one no larger than the bounds allow.
        first_fleet = min(int(first_fleet), int(self.bounds["max_instances"].max)) \
            if first_fleet is not None and first_fleet >= 1 else None
        bad, cost, near = replay_with_near_misses(demand, candidates, self.params,
                                                  self.near_miss_share_of_slo * self.params.slo_p95_ms,
                                                  100.0 * self.near_miss_utilisation, first_fleet)
        return [(int(b), float(c), int(n)) for b, c, n in zip(bad, cost, near)]

    def decide(self, state: dict | None, obs: Observation) -> Decision:
        state = dict(state or {})
        reward, sla, met = _window_reward(obs)
        m = obs.minutes
        # Demand beyond ten times what the largest allowed fleet can serve cannot be planned for
        # anyway; capping it keeps a corrupt sample from making the replay search for millions of instances.
        cap = 10.0 * self.bounds["max_instances"].max * self.params.slots_per_instance * self.params.mu * 60.0
        carried_demand = _state_demand(state)
        history = np.minimum(np.concatenate([carried_demand, observed_demand(m)])[-self.history_minutes:], cap)
        # The fleet the service had at each minute of that history. A replay starts from the
        # fleet at its first minute: from the oracle fleet instead, a pair that rarely scales in
        # (scale-down 10-30 on steady demand) looks as cheap as the oracle, while the real fleet
        # keeps whatever it grew to earlier. A state written before the fleet was kept pads with "unknown".
        carried_fleet = _state_fleet(state)
        kept = min(len(carried_fleet), len(carried_demand))
        fleet = np.concatenate([np.full(len(carried_demand) - kept, -1, dtype=np.int64),
                                carried_fleet[len(carried_fleet) - kept:], observed_fleet(m)])[-self.history_minutes:]
        decisions = int(_state_number(state, "decisions", 0, 0, 1e12))
        minutes_seen = int(_state_number(state, "minutes_seen", 0, 0, 1e15)) + len(m)
        day = minutes_seen // 1440
        phase = self.phase_for(day)
        risk = _state_number(state, "risk", self.initial_risk, 0.0, 1.0)
        # The error budget over the SLO period: each window's minutes and bad minutes, oldest
        # dropped once the period is full. A state without it (written before it was kept)
        # starts an empty record: no saved budget until fresh windows earn it.
        budget = _state_error_budget(state) + [[len(m), int(len(m) - np.sum(m["good"].astype(bool)))]]
        period_minutes = sum(w[0] for w in budget)
        while len(budget) > 1 and period_minutes - budget[0][0] >= self.slo_period_minutes:
            period_minutes -= budget.pop(0)[0]
        allowance_rate = 1.0 - obs.sla_target / 100.0
        budget_left = period_minutes * allowance_rate - sum(w[1] for w in budget)
        budget_saved = max(0.0, budget_left - self.budget_reserve_days * 1440 * allowance_rate)
        if "avg_reward" in state:
            _state_number(state, "avg_reward", 0.0, -1e9, 1e9)
        if state.get("last_target") is not None:
            try:
                Thresholds.from_dict({**obs.thresholds.to_dict(), **state["last_target"]})
            except (TypeError, ValueError, KeyError) as exc:
                raise PolicyStateError(f"policy state key 'last_target' is not a set of thresholds ({exc}). Delete "
                                       "the policy state file and re-materialize threshold_decision from that "
                                       "window on.") from None
        current = obs.thresholds
        burn = budget_burn_rate(m, obs.sla_target)
        # The SLA is at risk when this window burnt fast and the period's budget is overspent:
        # a fast burn that leaves budget in hand is learnt from in the replay instead.
        pages = not met and burn >= self.page_burn_rate and budget_left < 0
        if pages:
            risk = risk + (1.0 - risk) * self.page_caution_raise
            step = {n: self.page_step_share * self.bounds[n].max_step
                    for n in ("cpu_scale_up_threshold", "cpu_scale_down_threshold")}
            target = Thresholds(current.cpu_scale_up_threshold - step["cpu_scale_up_threshold"],
                                current.cpu_scale_down_threshold - step["cpu_scale_down_threshold"],
                                current.latency_threshold_ms, current.min_instances, current.max_instances)
            reason = (f"SLA {sla:.3f} % < target {obs.sla_target} %, error budget burning at {burn:.1f}x "
                      f"(>= {self.page_burn_rate:g}x) with the SLO period's budget overspent "
                      f"({budget_left:.1f} min): scale more first — scale-up down {step['cpu_scale_up_threshold']:g}, "
                      f"scale-down down {step['cpu_scale_down_threshold']:g}; caution raised to {risk:.2f}")
        elif state.get("last_target") and decisions % self.evaluate_every:
            # Replays are re-run every `evaluate_every` decisions (each one by default); in between it keeps
            # course towards the last target, which the step limit may not have reached yet.
            risk = self._relax(risk)
            target = Thresholds.from_dict({**state["last_target"],
                                           "latency_threshold_ms": current.latency_threshold_ms,
                                           "min_instances": current.min_instances, "max_instances": current.max_instances})
            reason = (f"SLA {sla:.3f} % kept: holding course towards {target.cpu_scale_up_threshold:g}/"
                      f"{target.cpu_scale_down_threshold:g} (caution {risk:.2f})")
        else:
            risk = self._relax(risk)
            budget_share = len(history) * allowance_rate * (1.0 - risk) + self.budget_spend_share * budget_saved
            allowed_bad = int(math.floor(budget_share))
            near_share = budget_share * self.near_miss_allowance
            allowed_near = int(math.floor(near_share)) if math.isfinite(near_share) else math.inf  # inf: not judged
            candidates = self.candidates(current)
            first_fleet = int(fleet[0]) if len(fleet) else None

            def judged(pairs: list[Thresholds]) -> list[tuple[bool, float, int, int, Thresholds]]:
                return [(bad <= allowed_bad and near <= allowed_near, cost, near, bad, cand)
                        for cand, (bad, cost, near) in zip(pairs, self.replay(history, pairs, first_fleet))]

            evaluated = judged(candidates)
            widened = not any(e[0] for e in evaluated)
            if widened:
                evaluated += judged(self.wide_candidates(current))
            feasible = [e for e in evaluated if e[0]]
            searched = "the 5-point grid of pairs, as no tracking pair did" if widened else "the tracking pairs"
            near_line = (f"p95 over {self.near_miss_share_of_slo * self.params.slo_p95_ms:g} ms or "
                         f"{100 * self.near_miss_utilisation:g} % busy")
            if feasible:
                _, cost, near, bad, target = min(feasible, key=lambda e: (e[1], e[2]))
                reason = (f"replay of the last {len(history) / 1440:.1f} days: {target.cpu_scale_up_threshold:g}/"
                          f"{target.cpu_scale_down_threshold:g} is the cheapest of {searched} that kept the SLA "
                          f"({bad} bad minutes allowed {allowed_bad}, {near} near misses ({near_line}) allowed "
                          f"{allowed_near}, caution {risk:.2f}, ${cost:.2f}; error budget left "
                          f"{budget_left:.1f} min)")
            else:
                _, cost, near, bad, target = min(evaluated, key=lambda e: (e[2], e[1]))
                reason = (f"no pair kept the SLA in replay, on the 5-point grid either; taking the safest ({bad} bad "
                          f"minutes, {near} near misses ({near_line}), caution {risk:.2f})")
        if not met and not pages:
            why = (f"under the {self.page_burn_rate:g}x that calls for scaling first" if burn < self.page_burn_rate
                   else f"with {budget_left:.1f} min of the SLO period's error budget left")
            reason += (f"; this window missed the SLA ({sla:.3f} %) at a burn rate of {burn:.1f}x, {why}: "
                       "its demand is in the replay")
        proposal = target.to_dict()
        if len(history) < self.min_history_to_raise_scale_up \
                and proposal["cpu_scale_up_threshold"] > current.cpu_scale_up_threshold:
            proposal["cpu_scale_up_threshold"] = current.cpu_scale_up_threshold
            reason += (f"; scale-up held at {current.cpu_scale_up_threshold:g} until "
                       f"{self.min_history_to_raise_scale_up / 1440:g} day(s) of demand are seen")
        if phase == "exploration" and self.explore_half_step and met:
            # Half steps while the demand history is still short.
            cur = current.to_dict()
            for name in ("cpu_scale_up_threshold", "cpu_scale_down_threshold"):
                step = self.bounds[name].max_step / 2.0
                proposal[name] = min(max(proposal[name], cur[name] - step), cur[name] + step)
        new = apply_guardrails(current, proposal, self.bounds)
        avg_reward = float(state.get("avg_reward", reward)) * (1 - self.learning_rate) + reward * self.learning_rate \
            if "avg_reward" in state else reward
        new_state = {"demand": history.tolist(), "decisions": decisions + 1, "minutes_seen": minutes_seen, "risk": risk,
                     "avg_reward": avg_reward, "last_target": target.to_dict(), "error_budget": budget,
                     "fleet": fleet.tolist()}
        return Decision(new, _actions(current, new), reason, reward, phase, new_state)


def make_policy(name: str, **settings: Any):
    if name == "fixed":
        return FixedPolicy(**settings)
    if name == "rule":
        return RulePolicy(**settings)
    if name == "learned":
        return LearningPolicy(**settings)
    raise ValueError(f"unknown policy {name!r}: use 'learned', 'rule' or 'fixed'")
