"""Predictive alerts: a Holt-Winters forecast of the next hours, and when it crosses a threshold.

Additive damped trend and additive 24 h seasonality (statsmodels' `ExponentialSmoothing`
formulation, `trend="add", damped_trend=True, seasonal="add"`), on 10-minute means of the
recent history (at least two full days). The first crossing of a threshold within the horizon
is the alert.

Why not statsmodels' own fit: it optimises each series separately (about 0.5 s each), and the
ops cycle forecasts 3 metrics for every service: 150 s for 100 services every 6 hours. Here
all series are filtered at once, as numpy arrays of (series x parameter sets): the smoothing
parameters are chosen per series by the smallest one-step-ahead squared error over a grid,
from the classic initial state (first season's mean and deviations, trend between the first
two seasons). The recursion is statsmodels' own:
tests/unit/test_forecast.py holds it equal to statsmodels given the same parameters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

BUCKET = "10min"
BUCKET_MINUTES = 10
SEASON_BUCKETS = 144  # 24 h of 10-minute buckets
DAMPING = 0.98
# (alpha, beta, gamma): level, trend and season smoothing. A coarse grid spans what a daily
# operational series needs, from a steady level to one that follows every bucket.
PARAMETER_GRID = np.array(list(itertools.product((0.05, 0.15, 0.3, 0.5, 0.8), (0.0, 0.02, 0.1),
                                                  (0.05, 0.2, 0.4))))


@dataclass
class Forecast:
    ts: pd.DatetimeIndex
    values: np.ndarray


def initial_state(y: np.ndarray, m: int = SEASON_BUCKETS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The classic initial state, per row of y (series x time, at least two seasons): level = the
    first season's mean, trend = the change of the seasonal mean per bucket between the first two
    seasons, season = the first season's deviations from its mean."""
    first, second = y[:, :m], y[:, m: 2 * m]
    level = first.mean(axis=1)
    trend = (second.mean(axis=1) - level) / m
    return level, trend, first - level[:, None]


def holt_winters_filter(y: np.ndarray, params: np.ndarray, level0: np.ndarray, trend0: np.ndarray,
                        season0: np.ndarray, phi: float = DAMPING, m: int = SEASON_BUCKETS):
    """Run the additive damped Holt-Winters recursion over y (series x time) for each parameter
    set (rows of params: alpha, beta, gamma). Returns the one-step-ahead SSE (series x sets) and
    the final level, trend and the last m seasonal terms (series x sets [x m])."""
    n, t = y.shape
    alpha, beta, gamma = (params[:, i][None, :] for i in range(3))
    level = np.repeat(level0[:, None], len(params), axis=1)
    trend = np.repeat(trend0[:, None], len(params), axis=1)
    season = np.repeat(season0[:, None, :], len(params), axis=1)  # ring: season[..., j] is for time j mod m
    sse = np.zeros((n, len(params)))
    for i in range(t):
        s = season[:, :, i % m]
        damped = phi * trend
        predicted = level + damped + s
        obs = y[:, i][:, None]
        sse += (obs - predicted) ** 2
        new_level = alpha * (obs - s) + (1 - alpha) * (level + damped)
        trend = beta * (new_level - level) + (1 - beta) * damped
        season[:, :, i % m] = gamma * (obs - level - damped) + (1 - gamma) * s
        level = new_level
    return sse, level, trend, season


def holt_winters_forecast(y: np.ndarray, steps: int, phi: float = DAMPING, m: int = SEASON_BUCKETS,
                          params: np.ndarray | None = None) -> np.ndarray:
    """Forecast `steps` buckets ahead for every row of y (series x time, no NaN, >= 2 seasons)."""
    grid = PARAMETER_GRID if params is None else np.atleast_2d(np.asarray(params, dtype=float))
    y = np.asarray(y, dtype=float)
    level0, trend0, season0 = initial_state(y, m)
    sse, level, trend, season = holt_winters_filter(y, grid, level0, trend0, season0, phi, m)
    best = np.argmin(sse, axis=1)
    rows = np.arange(len(y))
    level, trend, season = level[rows, best], trend[rows, best], season[rows, best]
    h = np.arange(1, steps + 1)
    damp_sum = np.cumsum(phi ** h)
    t = y.shape[1]
    season_ahead = season[:, (t + h - 1) % m]
    return level[:, None] + damp_sum[None, :] * trend[:, None] + season_ahead


def bucket_means(minutes: np.ndarray) -> np.ndarray:
    """(series x minutes, minutes a multiple of 10) -> 10-minute means; NaN where a bucket is empty."""
    n, t = minutes.shape
    clean = np.where(np.isfinite(minutes), minutes, np.nan).reshape(n, t // BUCKET_MINUTES, BUCKET_MINUTES)
    counts = np.isfinite(clean).sum(axis=2)
    return np.where(counts > 0, np.nansum(clean, axis=2) / np.maximum(counts, 1), np.nan)


def forecast_grid(minutes: np.ndarray, end: pd.Timestamp, horizon_minutes: int = 360) -> Forecast | None:
    """Forecast every row of a per-minute grid (series x minutes) ending at `end`. A row with
    less than two days of data comes back NaN; None when no row has two days."""
    buckets = bucket_means(minutes)
    usable = np.isfinite(buckets).sum(axis=1) >= 2 * SEASON_BUCKETS
    if not usable.any():
        return None
    # Start where the usable series' data starts; fill their gaps linearly (edges: nearest value).
    first = int(np.argmax(np.isfinite(buckets[usable]).any(axis=0)))
    history = buckets[usable, first:]
    x = np.arange(history.shape[1])
    for i in np.flatnonzero(np.isnan(history).any(axis=1)):
        ok = np.isfinite(history[i])
        history[i] = np.interp(x, x[ok], history[i, ok])
    steps = int(np.ceil(horizon_minutes / BUCKET_MINUTES))
    values = np.full((len(buckets), steps), np.nan)
    values[usable] = holt_winters_forecast(history, steps)
    return Forecast(pd.date_range(end, periods=steps, freq=BUCKET), values)


def forecast_next(series: pd.Series, horizon_minutes: int = 360) -> Forecast | None:
    """One series indexed by UTC timestamps. None when there is not yet two days of history."""
    y = series.replace([np.inf, -np.inf], np.nan).resample(BUCKET).mean().interpolate(limit_direction="both")
    if y.notna().sum() < 2 * SEASON_BUCKETS:
        return None
    steps = int(np.ceil(horizon_minutes / BUCKET_MINUTES))
    values = holt_winters_forecast(y.to_numpy(dtype=float)[None, :], steps)[0]
    ts = pd.date_range(y.index[-1] + pd.Timedelta(BUCKET), periods=steps, freq=BUCKET)
    return Forecast(ts, values)


def first_crossing(forecast: Forecast, threshold: float) -> tuple[pd.Timestamp, float] | None:
    above = np.flatnonzero(forecast.values > threshold)
    if not len(above):
        return None
    i = int(above[0])
    return forecast.ts[i], float(forecast.values[i])
