import numpy as np
import pandas as pd

from neuropilot_pipeline.core.features import _ewma_rows, category_codes, compute_features, trailing_mean, window_mean


def series(days=3, seed=0, spike_at=None):
    ts = pd.date_range("2026-11-01", periods=days * 1440, freq="1min", tz="UTC")
    minute = np.arange(len(ts))
    rng = np.random.default_rng(seed)
    x = 50 + 20 * np.sin(2 * np.pi * minute / 1440) + rng.normal(0, 1, len(ts))
    if spike_at is not None:
        x[spike_at] += 30
    return pd.DataFrame({"service": "web", "ts": ts, "cpu": x})


def test_features_are_causal_a_later_spike_changes_nothing_before_it():
    start, end = pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-03 06:00", tz="UTC")
    calm = compute_features(series(), ["cpu"], start, end)
    spiky = compute_features(series(spike_at=2 * 1440 + 200), ["cpu"], start, end)
    before = calm["ts"] < pd.Timestamp("2026-11-03 03:20", tz="UTC")
    pd.testing.assert_frame_equal(calm[before], spiky[before])
    at = spiky["ts"] == pd.Timestamp("2026-11-03 03:20", tz="UTC")
    assert spiky.loc[at, "value"].iloc[0] > calm.loc[at, "value"].iloc[0] + 29


def test_seasonal_component_explains_the_daily_cycle():
    start, end = pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-04", tz="UTC")
    f = compute_features(series(), ["cpu"], start, end)
    # The sine's daily swing (+-20) is taken up by trend + seasonal; the residual is ~noise.
    assert f["value"].std() > 10
    assert f["residual"].std() < 3.5
    assert len(f) == 1440 and f["ts"].is_monotonic_increasing


def test_gaps_stay_gaps_and_do_not_shift_the_window():
    raw = series()
    raw = raw[~raw["ts"].between(pd.Timestamp("2026-11-03 01:00", tz="UTC"), pd.Timestamp("2026-11-03 01:09", tz="UTC"))]
    start, end = pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-03 06:00", tz="UTC")
    f = compute_features(raw, ["cpu"], start, end)
    assert len(f) == 360
    assert f["value"].isna().sum() == 10
    assert f["baseline_mean"].notna().all()


def test_zscore_of_spike_is_large_and_flat_line_does_not_blow_up():
    raw = series(spike_at=2 * 1440 + 60)
    raw["flat"] = 5.0
    start, end = pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-03 06:00", tz="UTC")
    f = compute_features(raw, ["cpu", "flat"], start, end)
    cpu = f[f["metric"] == "cpu"].set_index("ts")
    assert cpu.loc[pd.Timestamp("2026-11-03 01:00", tz="UTC"), "zscore"] > 1.5
    flat = f[f["metric"] == "flat"]
    assert np.isfinite(flat["zscore"]).all() and (flat["zscore"].abs() < 1e-6).all()


def test_a_resent_minute_counts_once_with_its_last_value_and_off_grid_samples_are_ignored():
    raw = pd.concat([series(), series(seed=1).assign(service="api")], ignore_index=True)
    start, end = pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-03 06:00", tz="UTC")
    at = pd.Timestamp("2026-11-03 02:00", tz="UTC")
    resent = raw[(raw["service"] == "web") & (raw["ts"] == at)].assign(cpu=99.0)  # the source sent 02:00 again
    off_grid = raw[(raw["service"] == "api") & (raw["ts"] == at)].assign(ts=at + pd.Timedelta(seconds=30), cpu=-1e6)
    f = compute_features(pd.concat([raw, resent, off_grid], ignore_index=True), ["cpu"], start, end)
    plain = compute_features(raw, ["cpu"], start, end)
    assert len(f) == len(plain) == 2 * 360
    web = f[(f["service"] == "web") & (f["ts"] == at)]
    assert web["value"].tolist() == [99.0]
    # Everything else is as if neither extra row had been sent (features at t use only earlier minutes).
    other = ~((f["service"] == "web") & (f["ts"] >= at))
    pd.testing.assert_frame_equal(f[other].reset_index(drop=True), plain[other].reset_index(drop=True))


def test_baselines_are_pandas_figures_over_the_minutes_before_each_minute():
    # The documented definition: at minute t, pandas' trailing 24 h mean and std and its EWMA
    # (span 20) over the minutes before t. Gaps included, and windows with a full
    # history, a short one, and none at all (the first minute has nothing before it).
    raw = series(days=3, seed=5)
    raw.loc[raw.sample(frac=0.05, random_state=1).index, "cpu"] = np.nan
    raw = raw.drop(raw.sample(frac=0.02, random_state=2).index)
    grid = pd.date_range("2026-11-01", periods=3 * 1440, freq="1min", tz="UTC")
    before = raw.set_index("ts")["cpu"].reindex(grid).shift(1)
    expected = pd.DataFrame({
        "baseline_mean": before.rolling(1440, min_periods=180).mean(),
        "baseline_std": before.rolling(1440, min_periods=180).std(),
        "ewma": before.ewm(span=20, adjust=False, ignore_na=True).mean(),
    })
    for start in (grid[0], grid[1], grid[700], grid[2 * 1440]):
        end = start + pd.Timedelta(hours=6)
        f = compute_features(raw[raw["ts"] < end], ["cpu"], start, end).set_index("ts")
        want = expected.loc[start:end - pd.Timedelta(minutes=1)]
        # The mean and the EWMA are pandas' own floats; the std rolls over the day before the
        # window only, so its last digits differ from a roll over the whole history.
        exact = ["baseline_mean", "ewma"]
        pd.testing.assert_frame_equal(f[exact], want[exact], check_names=False, check_freq=False, check_exact=True)
        pd.testing.assert_series_equal(f["baseline_std"], want["baseline_std"], check_names=False, check_freq=False,
                                       rtol=1e-9)


def test_running_means_and_ewma_are_pandas_own_figures():
    # The compiled kernels stand in for pandas' rolling mean and EWM (column by column they
    # were most of the step): same floats on series with gaps, flat stretches and spikes.
    rng = np.random.default_rng(3)
    x = rng.lognormal(3, 1, (6, 5000))
    x[0, 100:900] = np.nan  # a long gap: windows with too few points
    x[1, 2000:4000] = 0.3  # a flat line: exactly 0.3, not 0.3 +- rounding
    x[2, ::7] = np.nan
    x[3, 2500] = 1e9  # a spike that must leave the window without a trace of rounding
    frame = pd.DataFrame(x.T)
    np.testing.assert_array_equal(trailing_mean(x, 1440, 180), frame.rolling(1440, min_periods=180).mean().to_numpy().T)
    np.testing.assert_array_equal(_ewma_rows(x, 2 / 21), frame.ewm(span=20, adjust=False, ignore_na=True).mean().to_numpy().T)
    centre = np.arange(x.shape[1])
    np.testing.assert_allclose(window_mean(x, np.maximum(0, centre - 15), np.minimum(x.shape[1], centre + 16), 1),
                               frame.rolling(31, center=True, min_periods=1).mean().to_numpy().T, rtol=1e-14)
    assert (trailing_mean(x, 1440, 180)[1, 3500:4000] == 0.3).all()


def test_rows_are_matched_to_their_service_and_others_to_none():
    # Rows of services the run does not cover, and rows with no service, belong to no series.
    services = ["api", "web", "db"]
    for values in (pd.Series(["web", "api", None, "cache", "db", "web"], dtype=object),
                   pd.Series(["web", "api", None, "cache", "db", "web"], dtype="str")):
        assert category_codes(values, services).tolist() == [1, 0, -1, -1, 2, 1]
    assert category_codes(pd.Series([], dtype="str"), services).tolist() == []
    assert category_codes(pd.Series(["web", "x"], dtype="str"), []).tolist() == [-1, -1]
