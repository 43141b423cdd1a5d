"""Per-metric features: trailing baselines, EWMA, z-scores and a causal seasonal decomposition.

All statistics at minute t use only minutes before t (the value at t is compared with a
baseline it did not shape), so a window's features are the same whether it is computed
alone (with its history read from the warehouse) or as part of a long run.

- baseline_mean / baseline_std: trailing `baseline_minutes` (default 24 h) of the metric.
- ewma: exponentially weighted mean, span 20 (the seed's), of the minutes before t.
- zscore: (value - baseline_mean) / baseline_std (std floored to avoid flat-line blow-ups).
- trend: the trailing 24 h mean; seasonal: the mean, over up to 7 earlier days, of
  (value - trend) at the same minute of day, smoothed over +-15 minutes;
  residual = value - trend - seasonal (24 h period).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

FEATURE_COLUMNS = ("value", "baseline_mean", "baseline_std", "ewma", "zscore", "trend", "seasonal", "residual")
HISTORY_DAYS = 8  # 24 h baseline + 7 days of seasonal profile


def compute_features(raw: pd.DataFrame, metrics: Sequence[str], start: pd.Timestamp, end: pd.Timestamp,
                     baseline_minutes: int = 1440, ewma_span: int = 20, season_days: int = 7) -> pd.DataFrame:
    """Long table (service, metric, ts, features...) for start <= ts < end, from raw rows that
    also cover the history before `start`."""
    frames = []
    for service, g in raw.groupby("service", sort=True):
        g = g.set_index("ts").sort_index()
        # A regular minute grid: gaps stay NaN instead of shifting the windows.
        grid = pd.date_range(g.index.min().floor("min"), end - pd.Timedelta(minutes=1), freq="1min")
        g = g[~g.index.duplicated(keep="last")].reindex(grid)
        for metric in metrics:
            x = g[metric].astype(float).replace([np.inf, -np.inf], np.nan)
            prev = x.shift(1)
            minp = max(30, baseline_minutes // 8)
            mean = prev.rolling(baseline_minutes, min_periods=minp).mean()
            std = prev.rolling(baseline_minutes, min_periods=minp).std()
            std_floor = np.maximum(std, 1e-3 * mean.abs() + 1e-9)
            ewma = prev.ewm(span=ewma_span, adjust=False, ignore_na=True).mean()
            detrended = x - mean
            seasonal = _seasonal_profile(detrended.to_numpy(), season_days)
            out = pd.DataFrame({
                "service": service, "metric": metric, "ts": grid,
                "value": x.to_numpy(), "baseline_mean": mean.to_numpy(), "baseline_std": std.to_numpy(),
                "ewma": ewma.to_numpy(), "zscore": ((x - mean) / std_floor).to_numpy(),
                "trend": mean.to_numpy(), "seasonal": seasonal, "residual": (detrended - seasonal).to_numpy(),
            })
            frames.append(out[(out["ts"] >= start) & (out["ts"] < end)])
    if not frames:
        return pd.DataFrame(columns=["service", "metric", "ts", *FEATURE_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _seasonal_profile(detrended: np.ndarray, season_days: int, smooth: int = 15) -> np.ndarray:
    """For each minute, the mean detrended value at the same minute of day over up to
    `season_days` earlier days (+-`smooth` minutes), using only earlier days."""
    n = len(detrended)
    result = np.full(n, np.nan)
    # Smooth over +-smooth minutes first (a centred window inside *earlier* days is causal).
    s = pd.Series(detrended).rolling(2 * smooth + 1, center=True, min_periods=1).mean().to_numpy()
    acc = np.zeros(n)
    cnt = np.zeros(n)
    for d in range(1, season_days + 1):
        lag = 1440 * d
        if lag >= n:
            break
        shifted = np.full(n, np.nan)
        # The smoothing window of an earlier day may reach `smooth` minutes past that slot;
        # that is still at least a day before t, so no future leaks in.
        shifted[lag:] = s[:-lag]
        ok = np.isfinite(shifted)
        acc[ok] += shifted[ok]
        cnt[ok] += 1
    has = cnt > 0
    result[has] = acc[has] / cnt[has]
    return np.where(has, result, 0.0)
