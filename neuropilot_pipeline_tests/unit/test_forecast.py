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


def test_vectorised_recursion_is_statsmodels_holt_winters():
    # Same parameters and initial state -> the same forecast as statsmodels' ExponentialSmoothing.
    import warnings

    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    from neuropilot_pipeline.core.forecast import DAMPING, SEASON_BUCKETS, holt_winters_forecast, initial_state

    rng = np.random.default_rng(3)
    t = np.arange(3 * SEASON_BUCKETS)
    y = np.stack([50 + 20 * np.sin(2 * np.pi * t / SEASON_BUCKETS) + 0.02 * t + rng.normal(0, 2, len(t)),
                  5 + rng.gamma(2.0, 1.0, len(t))])
    params = (0.3, 0.1, 0.2)
    ours = holt_winters_forecast(y, 36, params=np.array([params]))
    level, trend, season = initial_state(y)
    for i in range(len(y)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(y[i], trend="add", damped_trend=True, seasonal="add",
                                         seasonal_periods=SEASON_BUCKETS, initialization_method="known",
                                         initial_level=level[i], initial_trend=trend[i], initial_seasonal=season[i])
            fit = model.fit(smoothing_level=params[0], smoothing_trend=params[1], smoothing_seasonal=params[2],
                            damping_trend=DAMPING, optimized=False)
        np.testing.assert_allclose(ours[i], fit.forecast(36), rtol=1e-9, atol=1e-9)


def test_grid_forecasts_every_series_at_once_and_leaves_empty_ones_empty():
    from neuropilot_pipeline.core.forecast import forecast_grid

    day = sine(3)
    grid = np.stack([day.to_numpy(), day.to_numpy() * 0.5 + 10, np.full(len(day), np.nan)])
    grid[0, 100:130] = np.nan  # a half-hour gap is interpolated
    end = day.index[-1] + pd.Timedelta(minutes=1)
    f = forecast_grid(grid, end)
    assert f.values.shape == (3, 36) and f.ts[0] == end
    single = forecast_next(day)
    np.testing.assert_allclose(f.values[1], single.values * 0.5 + 10, rtol=1e-6, atol=1e-6)
    assert np.isnan(f.values[2]).all()
    assert forecast_grid(grid[:, -1440:], end) is None
