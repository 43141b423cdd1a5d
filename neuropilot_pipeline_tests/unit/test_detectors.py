"""Detectors on synthetic series with known answers; causality, chunking, cold start."""

import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.core.detectors import (
    DetectorConfig, anomaly_records, detect_chunk, detect_csv, detect_dataframe, joint_alarms,
)

DAY = 1440


def daily(days=5, noise=1.0, seed=0):
    n = days * DAY
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(seed)
    return ts, 50 + 20 * np.sin(2 * np.pi * np.arange(n) / DAY) + rng.normal(0, noise, n)


def flagged(values, ts, **kw):
    result, _ = detect_chunk(np.asarray(values)[None, :], ts, None, DetectorConfig(**kw))
    return np.flatnonzero(result.is_anomaly[0]), result


def test_sensitivity_mapping_is_monotone_and_documented():
    assert DetectorConfig(sensitivity=0.92).threshold == pytest.approx(3.25, abs=0.01)
    assert DetectorConfig(sensitivity=0.99).threshold < DetectorConfig(sensitivity=0.92).threshold \
        < DetectorConfig(sensitivity=0.5).threshold


def test_spike_on_a_seasonal_series_is_flagged_at_once():
    ts, x = daily()
    at = 3 * DAY + 100
    x[at] += 30  # within the daily swing's range, but far from this time of day's usual value
    hits, result = flagged(x, ts)
    assert at in hits
    assert result.scores["seasonal"][0, at] > 5


def test_level_shift_alarms_then_becomes_the_new_normal():
    ts, x = daily(days=6)
    x[4 * DAY:] += 30
    hits, _ = flagged(x, ts)
    assert 4 * DAY in hits
    assert not (hits > 4 * DAY + 12 * 60).any()  # absorbed within half a day


def test_cold_start_raises_nothing_while_the_baseline_forms():
    ts, x = daily(days=2)
    x[100] += 100
    x[600] = 0
    hits, _ = flagged(x, ts)
    assert not (hits < DAY).any()


def test_flat_line_raises_nothing_and_a_real_step_does():
    n = 3 * DAY
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    x = np.full(n, 4.0)
    assert flagged(x, ts)[0].size == 0
    x[2 * DAY:] = 8.0
    assert 2 * DAY in flagged(x, ts)[0]


def test_gaps_are_skipped_without_poisoning_the_state():
    ts, x = daily(days=4)
    x[2 * DAY: 2 * DAY + 30] = np.nan
    hits, result = flagged(x, ts)
    assert np.isnan(result.score[0, 2 * DAY + 5])
    assert np.isfinite(result.baseline[0, 2 * DAY + 31])
    assert not np.isin(np.arange(2 * DAY + 30, 2 * DAY + 60), hits).any()


def test_chunked_runs_carry_state_exactly():
    ts, x = daily(days=4)
    x[3 * DAY + 7] += 40
    whole, _ = detect_chunk(x[None, :], ts, None)
    state, parts = None, []
    for lo in range(0, len(x), 360):
        part, state = detect_chunk(x[None, lo:lo + 360], ts[lo:lo + 360], state)
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate([p.is_anomaly[0] for p in parts]), whole.is_anomaly[0])
    np.testing.assert_array_equal(np.concatenate([p.score[0] for p in parts]), whole.score[0])


def test_prefix_run_gives_the_same_verdicts(tmp_path):
    ts, x = daily(days=4, seed=3)
    x[3 * DAY + 50] -= 35
    df = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": x})
    full = detect_dataframe(df)
    prefix = detect_dataframe(df.iloc[: 3 * DAY + 100])
    pd.testing.assert_frame_equal(prefix, full.iloc[: 3 * DAY + 100])
    path, out = tmp_path / "in.csv", tmp_path / "out.csv"
    df.to_csv(path, index=False)
    summary = detect_csv(path, out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["timestamp", "value", "score", "is_anomaly", "severity", "score_zscore",
                                     "score_ewma", "score_seasonal", "score_gmm"]
    assert summary["anomalies"] == int(written["is_anomaly"].sum()) >= 1


def test_bad_input_names_the_problem():
    df = pd.DataFrame({"timestamp": ["2026-11-01 00:00", "yesterday"], "value": [1, 2]})
    with pytest.raises(ValueError, match="row 1: timestamp 'yesterday'"):
        detect_dataframe(df)
    with pytest.raises(ValueError, match="no numeric value column"):
        detect_dataframe(pd.DataFrame({"timestamp": ["2026-11-01 00:00"], "value": ["high"]}))


def test_rows_out_of_order_are_scored_in_file_order_and_counted(tmp_path):
    df = pd.DataFrame({"timestamp": ["2026-11-01 00:01", "2026-11-01 00:00", "2026-11-01 00:02"], "value": [1, 2, 3]})
    assert len(detect_dataframe(df)) == 3
    df.to_csv(tmp_path / "in.csv", index=False)
    assert detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")["out_of_order_rows"] == 1


def test_severity_follows_the_seed_rule_and_records_explain():
    ts, x = daily()
    at = 3 * DAY + 100
    x[at] += 60
    result, _ = detect_chunk(x[None, :], ts, None)
    records = anomaly_records(result, ["web/cpu_percent"], ts)
    rec = next(r for r in records if r["ts"] == ts[at])
    assert rec["severity"] == "critical"  # z far above 5
    assert "seasonal" in rec["detectors"] and "usual" in rec["explanation"] and f"{x[at]:.4g}" in rec["explanation"]


def test_joint_alarms_use_the_gmm_score_with_suppression():
    ts = pd.date_range("2026-11-01", periods=120, freq="1min", tz="UTC")
    g = np.zeros((1, 120))
    g[0, [10, 20, 100]] = [12.0, 12.0, 7.0]
    records, since = joint_alarms(g, ["web/joint"], ts, None, DetectorConfig(suppress_minutes=60))
    assert [(r["ts"], r["severity"]) for r in records] == [(ts[10], "critical"), (ts[100], "medium")]
    assert since[0] == 19  # minutes since the last alarm, carried to the next window
