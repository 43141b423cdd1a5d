"""Data-quality checks on a window of raw metrics (what real monitoring returns is messy)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def window_quality(frame: pd.DataFrame, metrics: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                   services: Sequence[str]) -> dict[str, object]:
    """Counts a reader can act on: missing minutes, NaN/Inf values, duplicates, absent services."""
    expected_minutes = int((end - start) / pd.Timedelta(minutes=1))
    per_service = {}
    for service in services:
        g = frame[frame["service"] == service] if not frame.empty else frame
        ts = g["ts"] if not g.empty else pd.Series([], dtype="datetime64[ns, UTC]")
        present = ts.dt.floor("min").nunique() if len(ts) else 0
        values = g[list(metrics)].to_numpy(dtype=float) if not g.empty else np.empty((0, len(metrics)))
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
