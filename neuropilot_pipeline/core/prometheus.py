"""Raw metrics from Prometheus' HTTP API (plain Prometheus, or Grafana Cloud's data-source proxy).

One PromQL query per metric over /api/v1/query_range at a 60 s step; ranges longer than
Prometheus' 11,000 points per series are split. Timeouts, and retries with exponential
backoff on 5xx, 429 and timeouts; a 4xx other than 429 is a mistake to fix, surfaced with
Prometheus' own error text. The query budget (`grafana_queries_per_hour`) is kept across runs
in a small ledger, and a backfill that would exceed it is refused up front, with numbers.
Credentials come from the environment only and never appear in errors or logs.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import requests

from .atomic import atomic_write_json

MAX_POINTS_PER_SERIES = 11_000
STEP_SECONDS = 60
# One query_range answer for a few services over <= 11,000 points is a few MB; far more means
# the query matches far more series than intended (e.g. a missing `sum by (service)`).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

# Defaults for common exporters (node_exporter / cAdvisor / an HTTP histogram); every query
# returns one series per `service`. Override per metric in ops_config.yaml source.queries.
DEFAULT_QUERIES = {
    "cpu_percent": 'avg by (service) (100 * rate(container_cpu_usage_seconds_total{container!=""}[2m]) '
                   '/ on (pod) group_left kube_pod_container_resource_limits{resource="cpu"})',
    "memory_percent": 'avg by (service) (100 * container_memory_working_set_bytes{container!=""} '
                      '/ container_spec_memory_limit_bytes{container!=""})',
    "p95_latency_ms": "1000 * histogram_quantile(0.95, sum by (service, le) "
                      "(rate(http_request_duration_seconds_bucket[2m])))",
    "error_rate_percent": '100 * sum by (service) (rate(http_requests_total{status=~"5.."}[2m])) '
                          "/ sum by (service) (rate(http_requests_total[2m]))",
    "request_rate_per_s": "sum by (service) (rate(http_requests_total[2m]))",
    "db_query_p95_ms": "1000 * histogram_quantile(0.95, sum by (service, le) "
                       "(rate(db_query_duration_seconds_bucket[2m])))",
    "instance_count": 'count by (service) (up{job="app"} == 1)',
    "cost_usd": 'sum by (service) (count by (service, instance) (up{job="app"} == 1)) * 0.0464 / 60',
}
# Restarts show up as counter resets; `{window}` becomes the window's length.
DEFAULT_COUNTER_RESETS_QUERY = "sum by (service) (resets(http_requests_total[{window}]))"
# How several series of one service (e.g. per instance) combine into the service's value.
SUM_METRICS = {"request_rate_per_s", "instance_count", "cost_usd"}


class SourceError(RuntimeError):
    """The metrics source failed in a way a retry will not fix; the message says what to do."""


class RateLimitExceeded(SourceError):
    pass


@dataclass
class Endpoint:
    """Where to send queries and how to authenticate (values from the environment)."""

    base_url: str  # e.g. http://prometheus:9090 or {GRAFANA_URL}/api/datasources/proxy/uid/{uid}
    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    label: str = "prometheus"

    def __repr__(self) -> str:  # credentials (fields or user:password@ in the URL) stay out of reprs
        return f"Endpoint({self.display_url!r}, label={self.label!r})"

    @property
    def display_url(self) -> str:
        """base_url without any user:password@ part, for messages and metadata."""
        parts = urllib.parse.urlsplit(self.base_url)
        if "@" not in parts.netloc:
            return self.base_url
        return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))

    @classmethod
    def from_env(cls, kind: str, env: Mapping[str, str], datasource_uid: str | None = None) -> "Endpoint":
        if kind == "prometheus":
            url = env.get("PROMETHEUS_URL")
            if not url:
                raise SourceError("source.kind is prometheus but PROMETHEUS_URL is not set (e.g. http://localhost:9090).")
            return cls(url.rstrip("/"), env.get("PROMETHEUS_BEARER_TOKEN") or None,
                       env.get("PROMETHEUS_USERNAME") or None, env.get("PROMETHEUS_PASSWORD") or None, "prometheus")
        if kind == "grafana":
            url, key = env.get("GRAFANA_URL"), env.get("GRAFANA_API_KEY")
            uid = datasource_uid or env.get("GRAFANA_DATASOURCE_UID")
            missing = [n for n, v in (("GRAFANA_URL", url), ("GRAFANA_API_KEY", key), ("GRAFANA_DATASOURCE_UID", uid)) if not v]
            if missing:
                raise SourceError(f"source.kind is grafana but {', '.join(missing)} is not set.")
            return cls(f"{url.rstrip('/')}/api/datasources/proxy/uid/{uid}", key, None, None, "grafana")
        raise SourceError(f"unknown source kind {kind!r}: use simulated, prometheus or grafana")

    def auth(self) -> dict[str, Any]:
        if self.bearer_token:
            return {"headers": {"Authorization": f"Bearer {self.bearer_token}"}}
        if self.username:
            return {"auth": (self.username, self.password or "")}
        return {}


class QueryLedger:
    """Queries sent in the last hour, kept on disk so the budget holds across runs."""

    def __init__(self, path: Path | None, per_hour: int, clock: Callable[[], float] = time.time,
                 unit: str = "queries", setting: str = "rate_limits.grafana_queries_per_hour"):
        self.path, self.per_hour, self.clock, self.unit, self.setting = path, per_hour, clock, unit, setting

    def _load(self) -> list[float]:
        if self.path is None or not self.path.exists():
            return []
        try:
            stamps = json.loads(self.path.read_text()).get("sent", [])
        except (ValueError, AttributeError):
            return []  # a corrupt ledger only loses the count, never the data
        now = self.clock()
        return [t for t in stamps if isinstance(t, (int, float)) and now - t < 3600]

    def reserve(self, n: int, what: str) -> None:
        if self.per_hour <= 0:
            return
        sent = self._load()
        if len(sent) + n > self.per_hour:
            raise RateLimitExceeded(
                f"{what} needs {n} {self.unit} but only {max(0, self.per_hour - len(sent))} of the "
                f"{self.per_hour} allowed per hour ({self.setting}) are left. Do fewer at a time, wait, "
                f"or raise the limit if your plan allows."
            )

    def record(self, n: int = 1) -> None:
        if self.path is None:
            return
        sent = self._load() + [self.clock()] * n
        atomic_write_json(self.path, {"sent": sent})


@dataclass
class PrometheusClient:
    endpoint: Endpoint
    timeout_s: float = 30.0
    retries: int = 4
    backoff_s: float = 1.0
    ledger: QueryLedger | None = None
    max_response_bytes: int = MAX_RESPONSE_BYTES
    session: requests.Session = field(default_factory=requests.Session)
    sleep: Callable[[float], None] = time.sleep

    def _get(self, path: str, params: Mapping[str, Any], result: bool = True) -> dict[str, Any]:
        url = f"{self.endpoint.base_url}{path}"
        last = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout_s, stream=True,
                                        **self.endpoint.auth())
                body = self._read_capped(resp, params.get("query"))
            except requests.Timeout:
                last = f"no answer within {self.timeout_s:g} s"
            except requests.ConnectionError as exc:
                last = f"cannot connect ({type(exc).__name__})"
            except requests.RequestException as exc:
                # e.g. the connection closed before Content-Length bytes arrived
                last = f"truncated response ({type(exc).__name__})"
            else:
                if self.ledger:
                    self.ledger.record()
                if resp.status_code in (401, 403):
                    raise SourceError(f"{self.endpoint.label} at {self.endpoint.display_url} refused the credentials "
                                      f"(HTTP {resp.status_code}). Check the token/username in the environment.")
                if resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("Retry-After")
                    if retry_after and retry_after.isdigit() and attempt < self.retries:
                        self.sleep(min(float(retry_after), 300.0))
                        continue
                else:
                    return self._parse(resp, body, result)
            if attempt < self.retries:
                self.sleep(self.backoff_s * 2 ** attempt)
        raise SourceError(f"{self.endpoint.label} at {self.endpoint.display_url} failed after {self.retries + 1} "
                          f"attempts: {last}. Check that the server is up and reachable.")

    def _read_capped(self, resp: requests.Response, query: str | None) -> bytes:
        declared = resp.headers.get("Content-Length")
        too_big = SourceError(
            f"{self.endpoint.label} sent more than {self.max_response_bytes // 2**20} MiB for one query"
            + (f" ({query!r})" if query else "") + ". The query matches far more series than one per service: "
            "aggregate it, e.g. `sum by (service) (...)`.")
        if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
            resp.close()
            raise too_big
        chunks, size = [], 0
        for chunk in resp.iter_content(chunk_size=1 << 16):
            size += len(chunk)
            if size > self.max_response_bytes:
                resp.close()
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, resp: requests.Response, raw: bytes, result: bool = True) -> dict[str, Any]:
        kind = resp.headers.get("Content-Type", "no Content-Type")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            if "json" in kind.lower():
                raise SourceError(f"{self.endpoint.label} answered HTTP {resp.status_code} with malformed or truncated "
                                  f"JSON ({len(raw)} bytes; {exc}). A proxy between NeuroPilot and the server may be "
                                  "cutting responses; check its size and time limits.") from None
            text = raw[:80].decode("utf-8", "replace")
            raise SourceError(f"{self.endpoint.label} answered HTTP {resp.status_code} with {kind}, not JSON "
                              f"(first bytes: {text!r}). Is the URL the Prometheus API root?") from None
        if not isinstance(body, dict):
            raise SourceError(f"{self.endpoint.label} answered JSON that is not an object.")
        if resp.status_code >= 400 or body.get("status") != "success":
            raise SourceError(f"{self.endpoint.label} rejected the query (HTTP {resp.status_code}, "
                              f"{body.get('errorType', 'error')}): {body.get('error', 'no error text')}")
        data = body.get("data")
        if not isinstance(data, dict) or (result and not isinstance(data.get("result"), list)):
            raise SourceError(f"{self.endpoint.label} answered without data.result; not a Prometheus API response.")
        return data

    def query_range(self, query: str, start: pd.Timestamp, end: pd.Timestamp, step: int = STEP_SECONDS
                    ) -> list[dict[str, Any]]:
        """Series for [start, end) at `step`, split under the points limit, merged by labels."""
        merged: dict[tuple, dict[str, Any]] = {}
        for lo, hi in split_range(start, end, step):
            data = self._get("/api/v1/query_range", {"query": query, "start": lo.timestamp(), "end": hi.timestamp(),
                                                     "step": step})
            for series in data["result"]:
                labels = series.get("metric") or {}
                key = tuple(sorted(labels.items()))
                merged.setdefault(key, {"metric": labels, "values": []})["values"].extend(series.get("values") or [])
        return list(merged.values())

    def query(self, query: str, at: pd.Timestamp) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": query, "time": at.timestamp()})["result"]

    def counter_resets(self, template: str, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, int]:
        """Counter resets (process restarts) per service in [start, end), from `resets()`."""
        seconds = int((end - start).total_seconds())
        out: dict[str, int] = {}
        for series in self.query(template.replace("{window}", f"{seconds}s"), end - pd.Timedelta(seconds=1)):
            service = series.get("metric", {}).get("service", "default")
            value = _float((series.get("value") or [None, "nan"])[1])
            if math.isfinite(value):
                out[service] = out.get(service, 0) + int(round(value))
        return out

    def check(self) -> dict[str, Any]:
        return self._get("/api/v1/status/buildinfo", {}, result=False)


def split_range(start: pd.Timestamp, end: pd.Timestamp, step: int = STEP_SECONDS) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Inclusive [lo, hi] chunks covering [start, end - step] with at most MAX_POINTS_PER_SERIES - 1 points."""
    last = end - pd.Timedelta(seconds=step)
    chunk = pd.Timedelta(seconds=step * (MAX_POINTS_PER_SERIES - 2))
    out, lo = [], start
    while lo <= last:
        hi = min(lo + chunk, last)
        out.append((lo, hi))
        lo = hi + pd.Timedelta(seconds=step)
    return out


def queries_needed(start: pd.Timestamp, end: pd.Timestamp, n_metrics: int) -> int:
    return n_metrics * len(split_range(start, end))


def to_frame(series_by_metric: Mapping[str, list[dict[str, Any]]], start: pd.Timestamp, end: pd.Timestamp,
             services: Sequence[str] | None, queries: Mapping[str, str]) -> pd.DataFrame:
    """One row per service and minute of [start, end); absent samples stay NaN."""
    grid = pd.date_range(start, end - pd.Timedelta(minutes=1), freq="1min")
    columns: dict[str, dict[str, np.ndarray]] = {}
    for metric, series_list in series_by_metric.items():
        if not series_list:
            raise SourceError(f"No metrics returned for {metric}: query {queries[metric]!r} over "
                              f"{start.isoformat()} – {end.isoformat()} matched no series. Check the query in "
                              f"`neuropilot check-sources` and that the service exports it.")
        per_service: dict[str, list[np.ndarray]] = {}
        instances: dict[str, dict[str, np.ndarray]] = {}
        for series in series_list:
            service = series["metric"].get("service", "default")
            if services and service not in services:
                continue
            values = np.full(len(grid), np.nan)
            for ts, raw in series["values"]:
                i = int((float(ts) - grid[0].timestamp()) // 60)
                if 0 <= i < len(grid):
                    values[i] = _float(raw)
            per_service.setdefault(service, []).append(values)
            instance = series["metric"].get("instance")
            if instance is not None:
                seen = instances.setdefault(service, {}).setdefault(instance, np.zeros(len(grid), dtype=bool))
                seen |= np.isfinite(values)
        for service, arrays in per_service.items():
            stack = np.vstack(arrays)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN minutes: handled on the next line
                combined = np.nansum(stack, axis=0) if metric in SUM_METRICS else np.nanmean(stack, axis=0)
            combined[np.isnan(stack).all(axis=0)] = np.nan
            columns.setdefault(service, {})[metric] = combined
            if service in instances:
                reporting = np.sum(list(instances[service].values()), axis=0)
                prev = columns[service].get("instances_reporting")
                columns[service]["instances_reporting"] = reporting if prev is None else np.maximum(prev, reporting)
    frames = []
    for service in sorted(columns):
        data = {"service": service, "ts": grid}
        for metric in queries:
            data[metric] = columns[service].get(metric, np.full(len(grid), np.nan))
        # The `instance` label survives as how many instances reported each minute.
        data["instances_reporting"] = columns[service].get("instances_reporting", np.zeros(len(grid))).astype(float)
        frames.append(pd.DataFrame(data))
    if not frames:
        raise SourceError(f"No metrics returned for the services {list(services or [])} in {start} – {end}: "
                          "the queries returned series only for other `service` labels.")
    return pd.concat(frames, ignore_index=True)


def _float(raw: Any) -> float:
    try:
        value = float(raw)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings; float() reads them
    except (TypeError, ValueError):
        return math.nan
    return value
