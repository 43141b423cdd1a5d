"""The reference autoscaled service of specs/backtest-model.md, reproduced exactly.

Per minute the service is a pooled M/M/c queue (c = ready instances x slots, service time
exponential with mean S); the platform autoscaler runs at the end of every minute with the
thresholds in force, new instances serve after a provisioning delay, and scale-in uses the
largest recommendation of the last few minutes. `AutoscaledService` is resumable: its
`state` is a JSON-serialisable dict, and running a trace in chunks gives exactly the same
minutes as one run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from numba import njit


@dataclass(frozen=True)
class ServiceParams:
    slots_per_instance: int = 4
    service_time_ms: float = 50.0
    slo_p95_ms: float = 250.0
    provision_delay_min: int = 3
    scale_in_window_min: int = 5
    price_per_instance_hour: float = 0.0464
    decision_interval_min: int = 360

    @property
    def mu(self) -> float:
        """Per-server service rate, requests per second."""
        return 1000.0 / self.service_time_ms


@dataclass(frozen=True)
class Thresholds:
    cpu_scale_up_threshold: float
    cpu_scale_down_threshold: float
    latency_threshold_ms: float
    min_instances: int
    max_instances: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Thresholds":
        return cls(
            cpu_scale_up_threshold=float(d["cpu_scale_up_threshold"]),
            cpu_scale_down_threshold=float(d["cpu_scale_down_threshold"]),
            latency_threshold_ms=float(d["latency_threshold_ms"]),
            min_instances=int(d["min_instances"]),
            max_instances=int(d["max_instances"]),
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


FIXED_BASELINE = Thresholds(80.0, 30.0, 250.0, 2, 200)


# ---- queueing maths ----------------------------------------------------------------------
# Compiled by numba: the minute loop and the learning policy's replays (below) evaluate them
# millions of times.

@njit(cache=True)
def _erlang_c_nb(servers, a):
    b = 1.0
    for k in range(1, servers + 1):
        b = a * b / (k + a * b)
    return servers * b / (servers - a * (1.0 - b))


@njit(cache=True)
def _tail_nb(t, lam, servers, mu, c_wait):
    theta = servers * mu - lam
    if abs(theta - mu) < 1e-12 * mu:
        return (1.0 - c_wait) * math.exp(-mu * t) + c_wait * math.exp(-mu * t) * (1.0 + mu * t)
    return (1.0 - c_wait) * math.exp(-mu * t) + c_wait * (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)


@njit(cache=True)
def _p95_seconds_nb(lam, servers, mu, c_wait):
    lo, hi = 0.0, 1.0
    while _tail_nb(hi, lam, servers, mu, c_wait) > 0.05:
        hi *= 2.0
    while hi - lo > 1e-6:
        mid = 0.5 * (lo + hi)
        if _tail_nb(mid, lam, servers, mu, c_wait) > 0.05:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def erlang_c(servers: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lambda/mu (requires a < c)."""
    return _erlang_c_nb(servers, a)


def tail_probability(t: float, lam: float, servers: int, params: ServiceParams, c_wait: float | None = None) -> float:
    """P(T > t) for the response time T (wait + service) of M/M/c, per the spec's formula."""
    if c_wait is None:
        c_wait = erlang_c(servers, lam / params.mu)
    return _tail_nb(t, lam, servers, params.mu, c_wait)


def p95_seconds(lam: float, servers: int, params: ServiceParams) -> float:
    """The t with P(T > t) = 0.05, by bisection to 1e-6 s; inf when overloaded."""
    mu = params.mu
    if servers <= 0 or lam >= servers * mu:
        return math.inf
    if lam <= 0:
        return -math.log(0.05) / mu
    return _p95_seconds_nb(lam, servers, mu, erlang_c(servers, lam / mu))


def oracle_instances(lam: float, params: ServiceParams) -> int:
    """The smallest n >= 1 whose p95 at arrival rate lam (per second) is within the SLO."""
    return int(_oracle_instances_nb(float(lam), params.mu, params.slots_per_instance, params.slo_p95_ms / 1000.0))


@njit(cache=True)
def _oracle_instances_nb(lam, mu, k, slo):
    # Erlang B is carried incrementally over the servers, so the search costs one pass up to
    # the answer's server count rather than one recursion per candidate.
    a = lam / mu
    b = 1.0
    servers = 0
    n = 0
    while True:
        n += 1
        for s in range(servers + 1, n * k + 1):
            b = a * b / (s + a * b)
        servers = n * k
        if a < servers:
            c_wait = servers * b / (servers - a * (1.0 - b))
            if _tail_nb(slo, lam, servers, mu, c_wait) <= 0.05:
                return n


def scale_factor_for_peak(requests_per_min: np.ndarray, peak_instances: float, params: ServiceParams = ServiceParams()) -> float:
    """The largest F such that the busiest minute of F * trace needs at most peak_instances (rel. 1e-9)."""
    peak = float(np.nanmax(requests_per_min))
    if peak <= 0:
        raise ValueError("the demand trace has no positive value; cannot scale it")

    def needs(f: float) -> int:
        return oracle_instances(f * peak / 60.0, params)

    lo, hi = 0.0, 1.0
    while needs(hi) <= peak_instances:
        lo, hi = hi, hi * 2.0
    while (hi - lo) > 1e-9 * hi:
        mid = 0.5 * (lo + hi)
        if needs(mid) <= peak_instances:
            lo = mid
        else:
            hi = mid
    return lo


# ---- the platform autoscaler -------------------------------------------------------------

# What `AutoscaledService.run` returns per minute, in this order.
RUN_OUTPUTS = ("requests", "lambda_per_s", "ready", "booting", "utilisation_pct", "p95_ms", "backlog", "cost_usd",
               "desired", "good")


class AutoscaledService:
    """The reference service minute by minute; resumable through `state`."""

    def __init__(self, params: ServiceParams = ServiceParams(), state: dict[str, Any] | None = None):
        self.params = params
        if state is None:
            self.ready: int | None = None  # set from the first minute's oracle
            self.booting: list[int] = []  # ready-at minute of each booting instance, oldest first
            self.backlog = 0.0
            self.desired_history: list[int] = []
            self.minute = 0
        else:
            self.ready = int(state["ready"])
            self.booting = [int(x) for x in state["booting"]]
            self.backlog = float(state["backlog"])
            self.desired_history = [int(x) for x in state["desired_history"]]
            self.minute = int(state["minute"])

    @property
    def state(self) -> dict[str, Any]:
        return {"ready": self.ready, "booting": list(self.booting), "backlog": self.backlog,
                "desired_history": list(self.desired_history), "minute": self.minute}

    def run(self, requests_per_min: np.ndarray, thresholds: Thresholds) -> dict[str, np.ndarray]:
        """The minutes of `requests_per_min` (requests per minute) under `thresholds`, per minute;
        advances the state. The minute loop is `_run_kernel`, compiled by numba."""
        p = self.params
        req = np.array(requests_per_min, dtype=float)  # a copy: it is also the "requests" output
        n = len(req)
        if n == 0:
            out = {k: np.zeros(0) for k in RUN_OUTPUTS}
            out["good"] = np.zeros(0, dtype=bool)
            return out
        if self.ready is None:
            self.ready = oracle_instances(req[0] / 60.0, p)
        (lam, ready, booting, util, p95, backlog, cost, desired, good,
         end_ready, end_booting, end_backlog, end_history, end_minute) = _run_kernel(
            req, int(self.ready), np.array(self.booting, dtype=np.int64), float(self.backlog),
            np.array(self.desired_history, dtype=np.int64), int(self.minute),
            float(thresholds.cpu_scale_up_threshold), float(thresholds.cpu_scale_down_threshold),
            float(thresholds.latency_threshold_ms), int(thresholds.min_instances), int(thresholds.max_instances),
            int(p.slots_per_instance), float(p.mu), float(p.slo_p95_ms), int(p.provision_delay_min),
            int(p.scale_in_window_min), float(p.price_per_instance_hour), p95_seconds(0.0, 1, p) * 1000.0)
        self.ready = int(end_ready)
        self.booting = end_booting.tolist()
        self.backlog = float(end_backlog)
        self.desired_history = end_history.tolist()
        self.minute = int(end_minute)
        return dict(zip(RUN_OUTPUTS, (req, lam, ready, booting, util, p95, backlog, cost, desired, good)))


@njit(cache=True, nogil=True)
def _run_kernel(req, ready, booting, backlog, history, minute, up, down, latency_ms, min_inst, max_inst,
                slots, mu, slo_ms, delay, scale_in_window, price_per_hour, idle_p95_ms):
    # `AutoscaledService.run`'s minute loop. Every float is computed by the same operations in
    # the same order as the spec's Python loop (kept as the oracle in the unit tests), so the
    # outputs are bit for bit the same; `history` follows Python's list[-window:] exactly.
    n = req.shape[0]
    lam_out, ready_out, boot_out, util_out = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    p95_out, backlog_out, cost_out, desired_out = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    good_out = np.empty(n, dtype=np.bool_)
    cap = booting.shape[0] + 16
    boot = np.empty(cap, dtype=np.int64)  # ready-at minutes, oldest first (ring from boot_head)
    boot[:booting.shape[0]] = booting
    boot_head, boot_n = 0, booting.shape[0]
    hist = np.empty(history.shape[0] + n, dtype=np.int64)  # the remembered desired are hist[h_lo:h_hi]
    hist[:history.shape[0]] = history
    h_lo, h_hi = 0, history.shape[0]
    for i in range(n):
        t = minute
        while boot_n > 0 and boot[boot_head] <= t:
            boot_head = (boot_head + 1) % cap
            boot_n -= 1
            ready += 1
        started_with_backlog = backlog > 0
        lam = (req[i] + backlog) / 60.0
        servers = ready * slots
        capacity = servers * mu
        if lam >= capacity:
            p95 = math.inf
            backlog = (lam - capacity) * 60.0
        else:
            if servers <= 0:
                p95 = math.inf
            elif lam <= 0:
                p95 = idle_p95_ms
            else:
                p95 = _p95_seconds_nb(lam, servers, mu, _erlang_c_nb(servers, lam / mu)) * 1000.0
            backlog = 0.0
        good = (not started_with_backlog) and p95 <= slo_ms
        if capacity > 0:
            x = lam / capacity
            u = (x if x < 1.0 else 1.0) * 100.0  # Python's min(1.0, x), NaN included
        else:
            u = 100.0
        provisioned = ready + boot_n
        # Autoscaler, end of minute.
        if u > up or p95 > latency_ms:
            desired = max(provisioned + 1, math.ceil(ready * u / up))
        elif u < down:
            desired = math.ceil(ready * u / up)
        else:
            desired = provisioned
        desired = min(max(desired, min_inst), max_inst)
        hist[h_hi] = desired
        h_hi += 1
        keep_from = -scale_in_window  # list[keep_from:]
        h_lo += max(0, h_hi - h_lo + keep_from) if keep_from < 0 else min(keep_from, h_hi - h_lo)
        if desired < provisioned:
            desired = hist[h_lo:h_hi].max()
        lam_out[i] = lam
        ready_out[i] = ready
        boot_out[i] = boot_n
        util_out[i] = u
        p95_out[i] = p95
        good_out[i] = good
        backlog_out[i] = backlog
        cost_out[i] = provisioned * price_per_hour / 60.0
        desired_out[i] = desired
        if desired > provisioned:
            extra = desired - provisioned
            if boot_n + extra > cap:
                grown = np.empty(max(2 * cap, boot_n + extra), dtype=np.int64)
                for j in range(boot_n):
                    grown[j] = boot[(boot_head + j) % cap]
                boot, cap, boot_head = grown, grown.shape[0], 0
            for _ in range(extra):
                boot[(boot_head + boot_n) % cap] = t + 1 + delay
                boot_n += 1
        elif desired < provisioned:
            surplus = provisioned - desired
            cancel = min(surplus, boot_n)
            boot_n -= cancel  # newest first
            ready -= surplus - cancel
        minute += 1
    end_booting = np.empty(boot_n, dtype=np.int64)
    for j in range(boot_n):
        end_booting[j] = boot[(boot_head + j) % cap]
    return (lam_out, ready_out, boot_out, util_out, p95_out, backlog_out, cost_out, desired_out, good_out,
            ready, end_booting, backlog, hist[h_lo:h_hi].copy(), minute)


# ---- many replays at once ----------------------------------------------------------------
# The learning policy replays days of demand under ~30 candidate thresholds at every decision,
# for every service. `replay_totals` is `AutoscaledService.run` reduced to what a replay needs
# (bad minutes and cost), compiled by numba. It decides "p95 within a limit?" from the response
# time's tail probability at the limit +- 1e-6 s, which settles it exactly as the spec's 1e-6 s
# bisection would, and bisects only when the root lies in that band: the same answers as `run`,
# about a hundred times faster (tests/unit/test_service_model.py holds them equal).

@njit(cache=True)
def _p95_over_nb(limit_ms, lam, servers, mu, c_wait):
    """p95 (ms, as the bisection computes it) > limit_ms, for a stable queue with lam > 0."""
    limit_s = limit_ms / 1000.0
    if _tail_nb(limit_s - 1e-6, lam, servers, mu, c_wait) <= 0.05:
        return False  # the root is below limit - 1e-6 s, so the bisection's midpoint is too
    if _tail_nb(limit_s + 1e-6, lam, servers, mu, c_wait) > 0.05:
        return True
    return _p95_seconds_nb(lam, servers, mu, c_wait) * 1000.0 > limit_ms


@njit(cache=True)
def _sure_below_c(limit_ms, mu):
    """An Erlang C under which p95 is surely below `limit_ms`, or -1 if there is none. P(T > t)
    <= e^(-mu t) + C (1 - e^(-mu t)), the waiting customers' tail being at most 1: with C under
    this bound the tail at the limit is under 0.05, so the p95 test needs no tail evaluation
    (most minutes). The 0.99 keeps the tail at the limit at least 3e-4 under 0.05, far outside
    the 1e-6 s band in which the bisection decides (the tail falls by at most mu per second)."""
    e = math.exp(-mu * limit_ms / 1000.0)
    return 0.99 * (0.05 - e) / (1.0 - e) if e < 0.05 else -1.0


@njit(cache=True, nogil=True)
def _replay_kernel(req, ups, downs, latency_ms, min_inst, max_inst, first_ready, slots, mu, slo_ms,
                   delay, scale_in_window, price_per_hour, near_miss_ms, near_miss_pct):
    # Minute by minute, all candidates together: candidates without backlog see the same
    # arrival rate, so one Erlang B recursion up to the largest server count serves them all
    # (the recursion is what costs; per candidate it would be redone ~30 times a minute).
    n_cand = ups.shape[0]
    idle_p95_ms = -math.log(0.05) / mu * 1000.0
    cap = max_inst.max() + 1
    ready = np.full(n_cand, first_ready, dtype=np.int64)
    boot = np.empty((n_cand, cap), dtype=np.int64)  # ready-at minutes, oldest first (ring)
    boot_head = np.zeros(n_cand, dtype=np.int64)
    boot_n = np.zeros(n_cand, dtype=np.int64)
    history = np.zeros((n_cand, scale_in_window), dtype=np.int64)
    backlog = np.zeros(n_cand)
    bad = np.zeros(n_cand, dtype=np.int64)
    cost = np.zeros(n_cand)
    near = np.zeros(n_cand, dtype=np.int64)  # bad minutes, and good ones with p95 or utilisation near the edge
    count_near = near_miss_ms < slo_ms or near_miss_pct < 100.0
    slo_c_bound = _sure_below_c(slo_ms, mu)
    near_c_bound = _sure_below_c(near_miss_ms, mu)
    lat_c_bound = np.empty(n_cand)
    for c in range(n_cand):
        lat_c_bound[c] = _sure_below_c(latency_ms[c], mu)
    max_servers = max(first_ready, max_inst.max()) * slots + 1
    erlang_b = np.empty(max_servers + 1)
    for t in range(req.shape[0]):
        shared_lam = req[t] / 60.0
        a = shared_lam / mu
        b_upto = 0  # erlang_b[1..b_upto] are computed for this minute's shared load
        b = 1.0
        for c in range(n_cand):
            while boot_n[c] > 0 and boot[c, boot_head[c]] <= t:
                boot_head[c] = (boot_head[c] + 1) % cap
                boot_n[c] -= 1
                ready[c] += 1
            started_with_backlog = backlog[c] > 0
            lam = (req[t] + backlog[c]) / 60.0
            servers = ready[c] * slots
            capacity = servers * mu
            lat = latency_ms[c]
            if lam >= capacity:
                overloaded = True
                backlog[c] = (lam - capacity) * 60.0
                over_slo, over_lat = True, True
            else:
                overloaded = False
                backlog[c] = 0.0
                if lam <= 0:
                    over_slo, over_lat = idle_p95_ms > slo_ms, idle_p95_ms > lat
                else:
                    if started_with_backlog:
                        c_wait = _erlang_c_nb(servers, lam / mu)
                    else:
                        while b_upto < servers:
                            b_upto += 1
                            b = a * b / (b_upto + a * b)
                            erlang_b[b_upto] = b
                        bs = erlang_b[servers]
                        c_wait = servers * bs / (servers - a * (1.0 - bs))
                    over_slo = c_wait > slo_c_bound and _p95_over_nb(slo_ms, lam, servers, mu, c_wait)
                    over_lat = over_slo if lat == slo_ms else \
                        c_wait > lat_c_bound[c] and _p95_over_nb(lat, lam, servers, mu, c_wait)
            if capacity > 0:
                u = min(1.0, lam / capacity) * 100.0
            else:
                u = 100.0
            if started_with_backlog or over_slo:
                bad[c] += 1
                near[c] += 1
            elif count_near and t > delay:
                # Not in the first minutes: the replay starts with the first minute's oracle fleet,
                # sized to run just under the SLO, and no scale-out can serve before t = 1 + delay.
                if u > near_miss_pct or lam > 0 and c_wait > near_c_bound \
                        and _p95_over_nb(near_miss_ms, lam, servers, mu, c_wait) \
                        or lam <= 0 and idle_p95_ms > near_miss_ms:
                    near[c] += 1
            provisioned = ready[c] + boot_n[c]
            up = ups[c]
            if u > up or over_lat or overloaded:
                desired = max(provisioned + 1, math.ceil(ready[c] * u / up))
            elif u < downs[c]:
                desired = math.ceil(ready[c] * u / up)
            else:
                desired = provisioned
            desired = min(max(desired, min_inst[c]), max_inst[c])
            history[c, t % scale_in_window] = desired
            if desired < provisioned:
                desired = history[c, :min(t + 1, scale_in_window)].max()
            cost[c] += provisioned * price_per_hour / 60.0
            if desired > provisioned:
                for _ in range(desired - provisioned):
                    boot[c, (boot_head[c] + boot_n[c]) % cap] = t + 1 + delay
                    boot_n[c] += 1
            elif desired < provisioned:
                surplus = provisioned - desired
                cancel = min(surplus, boot_n[c])
                boot_n[c] -= cancel  # newest first
                ready[c] -= surplus - cancel
    return bad, cost, near


def replay_totals(requests_per_min: np.ndarray, candidates: list[Thresholds],
                  params: ServiceParams = ServiceParams()) -> tuple[np.ndarray, np.ndarray]:
    """Bad minutes and cost of a fresh `AutoscaledService` run over the demand, per candidate."""
    bad, cost, _ = replay_with_near_misses(requests_per_min, candidates, params)
    return bad, cost


def replay_with_near_misses(requests_per_min: np.ndarray, candidates: list[Thresholds], params: ServiceParams,
                            near_miss_ms: float = math.inf, near_miss_utilisation_pct: float = math.inf,
                            first_ready: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`replay_totals` plus, per candidate, its near misses: the bad minutes, and the good minutes
    (after the first 1 + provision-delay minutes) whose p95 exceeded `near_miss_ms` (judged as
    exactly as the SLO is) or whose ready instances ran over `near_miss_utilisation_pct`.
    `first_ready`: the fleet the replay starts with (by default the first minute's oracle fleet,
    as the reference model starts)."""
    req = np.ascontiguousarray(requests_per_min, dtype=float)
    empty = np.zeros(len(candidates), dtype=np.int64)
    if not len(candidates) or not len(req):
        return empty, np.zeros(len(candidates)), empty.copy()
    col = lambda name, dtype: np.array([getattr(c, name) for c in candidates], dtype=dtype)  # noqa: E731
    return _replay_kernel(req, col("cpu_scale_up_threshold", float), col("cpu_scale_down_threshold", float),
                          col("latency_threshold_ms", float), col("min_instances", np.int64),
                          col("max_instances", np.int64),
                          oracle_instances(req[0] / 60.0, params) if first_ready is None else max(1, int(first_ready)),
                          params.slots_per_instance, params.mu, params.slo_p95_ms, params.provision_delay_min,
                          params.scale_in_window_min, params.price_per_instance_hour, float(near_miss_ms),
                          float(near_miss_utilisation_pct))
