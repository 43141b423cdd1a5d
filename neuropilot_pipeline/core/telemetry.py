"""Simulated service telemetry: the embedded default source of raw metrics.

The service is the reference autoscaled service of `specs/backtest-model.md`
(`core/service_model.py`), driven by the bundled WorldCup98 demand trace and scaled so its
busiest minute needs `peak_instances` instances. It reads the thresholds in force from the
terraform.tfvars that NeuroPilot writes, so an applied decision changes the telemetry that
follows. Its state (ready and booting instances, backlog) is carried from one window to the
next.

The eight metrics are derived from the model's per-minute load as follows (documented in
the README, "Simulated service"):
- request_rate_per_s = demand in the minute / 60.
- cpu_percent = the autoscaler's utilisation of ready instances (100 when overloaded).
- memory_percent = 30 + 0.45 * cpu_percent: a fixed per-instance footprint plus a working
  set that grows with requests in flight.
- p95_latency_ms = the model's p95; an overloaded minute (infinite p95 in the model) reports
  the 10 s client timeout, and so does a minute that starts with backlog.
- error_rate_percent = 0.05 % background errors, plus the share of the minute's demand that
  could not be served (backlog carried over counts as timed-out requests).
- db_query_p95_ms = 6 / (1 - rho) ms, an M/M/1 database whose utilisation rho is the demand
  relative to 1.25x the trace's peak demand (capped at 0.98).
- instance_count = ready + booting instances (both are billed).
- cost_usd = instance_count * price_per_instance_hour / 60.
A small measurement noise (seeded by service and minute, so re-runs are identical) is added
to cpu, memory and latency readings, as real exporters report.

Several services: each is a shifted (by whole days plus a few minutes) and rescaled copy of
the trace, both derived from the service's name, so adding a service needs no code change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .service_model import AutoscaledService, ServiceParams, Thresholds, scale_factor_for_peak

METRIC_COLUMNS = (
    "cpu_percent",
    "memory_percent",
    "p95_latency_ms",
    "error_rate_percent",
    "request_rate_per_s",
    "db_query_p95_ms",
    "instance_count",
    "cost_usd",
)
TIMEOUT_MS = 10_000.0
BACKGROUND_ERROR_PERCENT = 0.05
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
BUNDLED_TRACE = DATA_DIR / "traces" / "wc98_requests_per_minute_1998-06-10_to_06-30.csv"


@lru_cache(maxsize=4)
def load_demand_trace(path: str = str(BUNDLED_TRACE)) -> np.ndarray:
    df = pd.read_csv(path)
    count_col = [c for c in df.columns if c != df.columns[0]][0]
    return df[count_col].to_numpy(dtype=float)


def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / float(16**12)


@dataclass(frozen=True)
class ServiceProfile:
    """How one simulated service maps the shared trace: shift and scale, from its name."""

    name: str
    offset_minutes: int
    peak_instances: float

    @classmethod
    def for_service(cls, name: str, peak_instances: float, trace_minutes: int, index: int = 0) -> "ServiceProfile":
        if index == 0:
            return cls(name, 0, float(peak_instances))
        h = _unit_hash(name)
        offset = (int(h * 21) * 1440 + int(h * 997) % 180) % trace_minutes
        return cls(name, offset, float(peak_instances) * (0.4 + 1.2 * _unit_hash(name + "/scale")))


class SimulatedService:
    """One simulated service; `window()` produces a window of minutes and advances the state."""

    def __init__(self, profile: ServiceProfile, origin: pd.Timestamp, params: ServiceParams = ServiceParams(),
                 trace_path: str = str(BUNDLED_TRACE)):
        self.profile = profile
        self.origin = pd.Timestamp(origin).tz_convert("UTC") if pd.Timestamp(origin).tzinfo else pd.Timestamp(origin, tz="UTC")
        self.params = params
        self.trace = load_demand_trace(trace_path)
        self.scale = _cached_scale(trace_path, profile.peak_instances, params)
        self.db_capacity_per_s = 1.25 * self.trace.max() * self.scale / 60.0

    def demand(self, start: pd.Timestamp, minutes: int) -> np.ndarray:
        first = int((pd.Timestamp(start) - self.origin) / pd.Timedelta(minutes=1)) + self.profile.offset_minutes
        idx = np.arange(first, first + minutes) % len(self.trace)
        return self.trace[idx] * self.scale

    def window(self, start: pd.Timestamp, minutes: int, thresholds: Thresholds, state: dict | None) -> tuple[pd.DataFrame, dict]:
        requests = self.demand(start, minutes)
        sim = AutoscaledService(self.params, state=state)
        out = sim.run(requests, thresholds)
        ts = pd.date_range(pd.Timestamp(start), periods=minutes, freq="1min")
        rng = np.random.default_rng([int(_unit_hash(self.profile.name) * 2**31), int(ts[0].timestamp()) // 60])
        util = np.asarray(out["utilisation_pct"], dtype=float)
        good = np.asarray(out["good"], dtype=bool)
        p95 = np.asarray(out["p95_ms"], dtype=float)
        p95 = np.where(np.isfinite(p95), np.minimum(p95, TIMEOUT_MS), TIMEOUT_MS)
        # A minute that starts with backlog is bad even when its queue maths is not.
        p95 = np.where(~good & (p95 <= self.params.slo_p95_ms), TIMEOUT_MS, p95)
        backlog = np.asarray(out["backlog"], dtype=float)
        served_share = np.divide(backlog, requests + backlog, out=np.zeros_like(backlog), where=(requests + backlog) > 0)
        rho = np.minimum(requests / 60.0 / self.db_capacity_per_s, 0.98)
        instances = np.asarray(out["ready"], dtype=float) + np.asarray(out["booting"], dtype=float)
        df = pd.DataFrame({
            "service": self.profile.name,
            "ts": ts,
            "cpu_percent": np.clip(util + rng.normal(0, 0.8, minutes), 0, 100),
            "memory_percent": np.clip(30 + 0.45 * util + rng.normal(0, 0.5, minutes), 0, 100),
            "p95_latency_ms": p95 * (1 + rng.normal(0, 0.01, minutes)),
            "error_rate_percent": BACKGROUND_ERROR_PERCENT + 100 * served_share,
            "request_rate_per_s": requests / 60.0,
            "db_query_p95_ms": 6.0 / (1.0 - rho) * (1 + rng.normal(0, 0.02, minutes)),
            "instance_count": instances,
            "cost_usd": instances * self.params.price_per_instance_hour / 60.0,
        })
        return df, sim.state


@lru_cache(maxsize=256)
def _cached_scale(trace_path: str, peak_instances: float, params: ServiceParams) -> float:
    return scale_factor_for_peak(load_demand_trace(trace_path), peak_instances, params)
