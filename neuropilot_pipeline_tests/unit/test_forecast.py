import numpy as np
import pandas as pd

from neuropilot_pipeline.core.forecast import first_crossing, forecast_next


def sine(days, amplitude=20.0):
    ts = pd.date_range("2026-11-01", periods=days * 1440, freq="1min", tz="UTC")
    return pd.Series(50 + amplitude * np.sin(2 * np.pi * np.arange(len(ts)) / 1440), index=ts)


def test_needs_two_days_of_history():
    assert forecast_next(sine(1)) is None


def test_daily_cycle_is_forecast_and_its_peak_crossing_predicted():
    history = sine(3)  # ends at midnight; the sine peaks (70) at 06:00 the next day
    f = forecast_next(history, horizon_minutes=360)
    assert len(f.values) == 36 and f.ts[0] == pd.Timestamp("2026-11-04 00:00", tz="UTC")
    expected = 50 + 20 * np.sin(2 * np.pi * ((f.ts - f.ts[0]) / pd.Timedelta(minutes=1) + 5) / 1440)
    assert np.abs(f.values - expected).max() < 2.0
    when, value = first_crossing(f, 65.0)
    # 50 + 20 sin(x) = 65 at x = asin(0.75): 03:14 UTC; the forecast works in 10-minute buckets.
    assert pd.Timestamp("2026-11-04 03:00", tz="UTC") <= when <= pd.Timestamp("2026-11-04 03:30", tz="UTC")
    assert value > 65.0
    assert first_crossing(f, 80.0) is None
