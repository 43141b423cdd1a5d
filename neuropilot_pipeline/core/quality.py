"""Data-quality checks on a window of raw metrics (what real monitoring returns is messy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


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
    per_service = {}
    for service in services:
        g = frame[frame["service"] == service] if not frame.empty else frame
        ts = g["ts"] if not g.empty else pd.Series([], dtype="datetime64[ns, UTC]")
        values = g[list(metrics)].to_numpy(dtype=float) if not g.empty else np.empty((0, len(metrics)))
        # A minute counts as present when at least one metric has a value for it.
        has_value = np.isfinite(values).any(axis=1) if len(values) else np.zeros(0, dtype=bool)
        present = ts[has_value].dt.floor("min").nunique() if len(ts) else 0
        per_service[service] = {
            "missing_minutes": int(expected_minutes - present),
            "duplicate_timestamps": int(len(ts) - ts.nunique()) if len(ts) else 0,
            "nan_values": int(np.isnan(values).sum()),
            "inf_values": int(np.isinf(values).sum()),
        }
    totals = {k: int(sum(s[k] for s in per_service.values())) for k in
              ("missing_minutes", "duplicate_timestamps", "nan_values", "inf_values")}
    absent = [s for s in services if per_service[s]["missing_minutes"] == expected_minutes]
    return {"expected_minutes": expected_minutes, **totals, "absent_services": absent, "per_service": per_service}
