"""Predictive alerts: a Holt-Winters forecast of the next hours, and when it crosses a threshold.

statsmodels' ExponentialSmoothing (additive damped trend, additive 24 h seasonality) is fitted
on 10-minute means of the recent history (at least two full days); the forecast's first
crossing of a threshold within the horizon is the alert.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

BUCKET = "10min"
SEASON_BUCKETS = 144  # 24 h of 10-minute buckets


@dataclass
class Forecast:
    ts: pd.DatetimeIndex
    values: np.ndarray


def forecast_next(series: pd.Series, horizon_minutes: int = 360) -> Forecast | None:
    """`series` indexed by UTC timestamps. None when there is not yet two days of history."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = series.replace([np.inf, -np.inf], np.nan).resample(BUCKET).mean().interpolate(limit_direction="both")
    if y.notna().sum() < 2 * SEASON_BUCKETS:
        return None
    steps = int(np.ceil(horizon_minutes / 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on flat series is not actionable here
        fit = ExponentialSmoothing(y.to_numpy(dtype=float), trend="add", damped_trend=True, seasonal="add",
                                   seasonal_periods=SEASON_BUCKETS, initialization_method="estimated").fit()
        values = np.asarray(fit.forecast(steps), dtype=float)
    ts = pd.date_range(y.index[-1] + pd.Timedelta(BUCKET), periods=steps, freq=BUCKET)
    return Forecast(ts, values)


def first_crossing(forecast: Forecast, threshold: float) -> tuple[pd.Timestamp, float] | None:
    above = np.flatnonzero(forecast.values > threshold)
    if not len(above):
        return None
    i = int(above[0])
    return forecast.ts[i], float(forecast.values[i])
