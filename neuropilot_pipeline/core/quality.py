"""Data-quality checks on a window of raw metrics (what real monitoring returns is messy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .features import category_codes


def mark_gaps(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Keep a partially bad window, with each minute that lacks a metric marked `gap`."""
    values = frame[list(metrics)].to_numpy(dtype=float)
    return frame.assign(gap=~np.isfinite(values).all(axis=1))


def series_changes(previous: Sequence[str], current: Sequence[str]) -> dict[str, list[str]]:
    return {"appeared": sorted(set(current) - set(previous)), "disappeared": sorted(set(previous) - set(current))}


def window_quality(frame: pd.DataFrame, metrics: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                   services: Sequence[str]) -> dict[str, object]:
    """Counts a reader can act on: missing minutes, NaN/Inf values, duplicates, absent services."""
    expected_minutes = int((end - start) / pd.Timedelta(minutes=1))
    # All services at once, by integer service codes: a mask per service over the whole window
    # compared every row's service string a hundred times at 100 services.
    n = len(services)
    values = frame[list(metrics)].to_numpy(dtype=float) if not frame.empty else np.empty((0, len(metrics)))
    code = category_codes(frame["service"], services) if not frame.empty else np.zeros(0, dtype=np.int64)
    ts_ns = pd.DatetimeIndex(frame["ts"]).as_unit("ns").asi8 if not frame.empty else np.zeros(0, dtype=np.int64)
    mine = code >= 0
    code, values, ts_ns = code[mine], values[mine], ts_ns[mine]
    # A minute counts as present when at least one metric has a value for it.
    has_value = np.isfinite(values).any(axis=1)
    minute = ts_ns // pd.Timedelta(minutes=1).value
    present = _distinct_per(code[has_value], minute[has_value], n)
    rows = np.bincount(code, minlength=n)
    duplicates = rows - _distinct_per(code, ts_ns, n)
    nan_values = np.bincount(code, weights=np.isnan(values).sum(axis=1), minlength=n)
    inf_values = np.bincount(code, weights=np.isinf(values).sum(axis=1), minlength=n)
    per_service = {
        service: {"missing_minutes": int(expected_minutes - present[i]), "duplicate_timestamps": int(duplicates[i]),
                  "nan_values": int(nan_values[i]), "inf_values": int(inf_values[i])}
        for i, service in enumerate(services)
    }
    totals = {k: int(sum(s[k] for s in per_service.values())) for k in
              ("missing_minutes", "duplicate_timestamps", "nan_values", "inf_values")}
    absent = [s for s in services if per_service[s]["missing_minutes"] == expected_minutes]
    return {"expected_minutes": expected_minutes, **totals, "absent_services": absent, "per_service": per_service}


def _distinct_per(code: np.ndarray, value: np.ndarray, n: int) -> np.ndarray:
    """For each of n codes, how many distinct values it has."""
    pairs = np.unique(np.stack([code, value]), axis=1) if len(code) else np.empty((2, 0), dtype=np.int64)
    return np.bincount(pairs[0], minlength=n)


class MetricRangeError(ValueError):
    """Values no real service can have: the query returns the wrong thing (or the wrong unit)."""


# Physically possible ranges. Values outside are refused, never stored: a negative CPU or a
# latency in seconds would silently teach the model and the policy a wrong world.
PERCENT_METRICS = ("cpu_percent", "memory_percent", "error_rate_percent")
NON_NEGATIVE_METRICS = ("p95_latency_ms", "db_query_p95_ms", "request_rate_per_s", "instance_count", "cost_usd")
LATENCY_METRICS = ("p95_latency_ms", "db_query_p95_ms")
# A p95 below one millisecond for a whole window is what seconds look like when read as ms.
SECONDS_AS_MS_MEDIAN = 1.0
PERCENT_TOLERANCE = 0.5  # rounding in exporters


def check_metric_ranges(frame: pd.DataFrame, queries: dict[str, str] | None = None) -> None:
    """Raise MetricRangeError naming every impossible metric, the service, an example and the fix."""
    problems = []
    queries = queries or {}

    def where(metric: str, mask: np.ndarray) -> str:
        rows = frame.loc[mask, ["service", "ts", metric]].head(1)
        r = rows.iloc[0]
        return (f"{int(mask.sum())} value(s), e.g. {r[metric]:g} for service {r['service']!r} at "
                f"{pd.Timestamp(r['ts']).isoformat()}")

    for metric in PERCENT_METRICS:
        if metric not in frame:
            continue
        v = frame[metric].to_numpy(dtype=float)
        bad = np.isfinite(v) & ((v < -PERCENT_TOLERANCE) | (v > 100 + PERCENT_TOLERANCE))
        if bad.any():
            problems.append(f"{metric} must be a percentage in 0–100: {where(metric, bad)}. Make the query "
                            f"return percent (a 0–1 ratio needs `100 *`, per-core CPU needs dividing by the cores)"
                            + (f"; query: {queries[metric]}" if metric in queries else ""))
    for metric in NON_NEGATIVE_METRICS:
        if metric not in frame:
            continue
        v = frame[metric].to_numpy(dtype=float)
        bad = np.isfinite(v) & (v < 0)
        if bad.any():
            problems.append(f"{metric} cannot be negative: {where(metric, bad)}. Check the query"
                            + (f" ({queries[metric]})" if metric in queries else "")
                            + "; a rate() over a counter that is not monotonic, or a subtraction, gives this")
    for metric in LATENCY_METRICS:
        if metric not in frame:
            continue
        for service, g in frame.groupby("service"):
            sv = g[metric].to_numpy(dtype=float)
            sv = sv[np.isfinite(sv) & (sv > 0)]
            if len(sv) >= 10 and float(np.median(sv)) < SECONDS_AS_MS_MEDIAN:
                problems.append(f"{metric} of service {service!r} has a median of {float(np.median(sv)):.4g} ms over "
                                f"the window: that is seconds read as milliseconds. Multiply the query by 1000 "
                                f"(e.g. `1000 * histogram_quantile(...)`)")
                break
    if problems:
        raise MetricRangeError("Refused to store impossible metric values (nothing was written):\n- "
                               + "\n- ".join(problems))
