"""Where raw metric snapshots come from: the simulated service (default) or Prometheus/Grafana."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

import os

from ..core.config import MANAGED_THRESHOLDS, OpsConfig
from ..core.prometheus import DEFAULT_COUNTER_RESETS_QUERY, DEFAULT_QUERIES, Endpoint, PrometheusClient, QueryLedger, SourceError, \
    queries_needed, to_frame
from ..core.quality import MetricRangeError, check_metric_ranges
from ..core.service_model import Thresholds
from ..core.telemetry import METRIC_COLUMNS, ServiceProfile, SimulatedService, load_demand_trace
from ..storage.state import StateStore

SIMULATOR_STATE = "simulator"


@dataclass
class Collected:
    frame: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)
    counter_resets: dict[str, int] = field(default_factory=dict)


def thresholds_in_force(cfg: OpsConfig, service: str) -> tuple[Thresholds, str]:
    """What the platform's autoscaler runs with now: the service's tfvars, else ops_config."""
    from ..core.tfvars import read_tfvars  # local: tfvars parsing is only needed here and in apply

    path = cfg.tfvars_path(service)
    values = cfg.threshold_values()
    origin = f"ops_config ({cfg.config_path})"
    if path.exists():
        parsed = read_tfvars(path)
        values.update({k: parsed[k] for k in MANAGED_THRESHOLDS if k in parsed})
        origin = str(path)
    return Thresholds.from_dict({k: values[k] for k in MANAGED_THRESHOLDS}), origin


class MetricsSourceResource(dg.ConfigurableResource):
    """Collects one window of per-minute metrics for the watched services.

    `kind` overrides ops_config's source.kind (handy in tests); empty means "as configured".
    """

    kind: str = ""

    def collect(self, cfg: OpsConfig, state: StateStore, start: pd.Timestamp, end: pd.Timestamp,
                partition_key: str, previous_partition_key: str, only: list[str] | None = None) -> Collected:
        """One window of every watched service, or of the services in `only`."""
        kind = self.kind or str(cfg.source.get("kind", "simulated"))
        if kind == "simulated":
            return collect_simulated(cfg, state, start, end, partition_key, previous_partition_key, only)
        try:
            collected = collect_prometheus(cfg, kind, start, end, partition_key)
        except SourceError as exc:
            # The client already retried what a retry can fix; this needs a person.
            raise dg.Failure(str(exc), allow_retries=False) from None
        if only is not None:
            collected.frame = collected.frame[collected.frame["service"].isin(only)].reset_index(drop=True)
        return collected


def prometheus_client(cfg: OpsConfig, kind: str, env=None) -> tuple[PrometheusClient, dict[str, str]]:
    """Client and queries for a Prometheus-compatible source; credentials only from the environment."""
    env = os.environ if env is None else env
    queries = {**DEFAULT_QUERIES, **(cfg.source.get("queries") or {})}
    unknown = set(queries) - set(METRIC_COLUMNS)
    if unknown:
        raise SourceError(f"source.queries has unknown metrics {sorted(unknown)}; use {list(METRIC_COLUMNS)}")
    grafana = cfg.source.get("grafana") or {}
    endpoint = Endpoint.from_env(kind, env, grafana.get("datasource_uid"))
    limit_key = "grafana_queries_per_hour" if kind == "grafana" else "prometheus_queries_per_hour"
    ledger = QueryLedger(cfg.local_state_dir / f"{kind}_query_ledger.json", int(cfg.rate_limits.get(limit_key, 0)))
    client = PrometheusClient(endpoint, timeout_s=float(cfg.source.get("timeout_seconds", 30)),
                              retries=int(cfg.source.get("retries", 4)), ledger=ledger)
    return client, queries


def collect_prometheus(cfg: OpsConfig, kind: str, start: pd.Timestamp, end: pd.Timestamp, partition_key: str,
                       env=None) -> Collected:
    client, queries = prometheus_client(cfg, kind, env)
    client.ledger.reserve(queries_needed(start, end, len(queries)) + 1, f"raw_metrics {partition_key}")
    series = {metric: client.query_range(query, start, end) for metric, query in queries.items()}
    frame = to_frame(series, start, end, list(cfg.services) or None, queries)
    try:
        check_metric_ranges(frame, queries)
    except MetricRangeError as exc:
        raise SourceError(f"{kind} window {start.isoformat()} – {end.isoformat()}: {exc}") from None
    template = cfg.source.get("counter_resets_query", DEFAULT_COUNTER_RESETS_QUERY)
    resets = client.counter_resets(template, start, end) if template else {}
    notes = {s: f"{kind} at {client.endpoint.display_url}" for s in frame["service"].unique()}
    return Collected(frame, notes, counter_resets={s: resets.get(s, 0) for s in frame["service"].unique()})


def collect_simulated(cfg: OpsConfig, state: StateStore, start: pd.Timestamp, end: pd.Timestamp,
                      partition_key: str, previous_partition_key: str, only: list[str] | None = None) -> Collected:
    sim_cfg = cfg.source.get("simulated") or {}
    peak = float(sim_cfg.get("peak_instances", 40))
    origin = pd.Timestamp(cfg.partitions_start, tz="UTC")
    trace_minutes = len(load_demand_trace())
    minutes = int((end - start) / pd.Timedelta(minutes=1))
    frames, notes, new_states = [], {}, {}
    chosen = [(index, service) for index, service in enumerate(cfg.services) if only is None or service in only]
    carried = state.read_services(SIMULATOR_STATE, previous_partition_key, [service for _, service in chosen])
    for index, service in chosen:
        profile = ServiceProfile.for_service(service, peak, trace_minutes, index)
        sim = SimulatedService(profile, origin)
        thresholds, where = thresholds_in_force(cfg, service)
        prev = carried.get(service)
        frame, new_states[service] = sim.window(start, minutes, thresholds, prev)
        frames.append(frame)
        notes[service] = f"thresholds from {where}; state {'carried from ' + previous_partition_key if prev else 'fresh'}"
    if new_states:
        state.write_services(SIMULATOR_STATE, partition_key, new_states)
    return Collected(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["service", "ts"]), notes)
