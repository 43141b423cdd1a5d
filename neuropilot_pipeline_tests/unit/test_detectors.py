"""Detectors on synthetic series with known answers; causality, chunking, cold start."""

import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.core.detectors import (
    DetectorConfig, align_state, anomaly_records, detect_chunk, detect_csv, detect_dataframe, joint_alarms,
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
                                     "score_ewma", "score_seasonal", "score_gmm", "score_shape", "score_range"]
    assert summary["anomalies"] == int(written["is_anomaly"].sum()) >= 1


def test_bad_input_names_the_problem():
    df = pd.DataFrame({"timestamp": ["2026-11-01 00:00", "yesterday"], "value": [1, 2]})
    with pytest.raises(ValueError, match=r"'yesterday' in column 'timestamp' \(data row 2\) cannot be parsed"):
        detect_dataframe(df)
    with pytest.raises(ValueError, match="no numeric value column"):
        detect_dataframe(pd.DataFrame({"timestamp": ["2026-11-01 00:00"], "value": ["high"]}))


def test_unix_times_give_the_verdicts_of_the_same_times_in_iso_8601(tmp_path):
    # Unix seconds were read as nanoseconds since 1970: 5 days fell into a third of a
    # millisecond, and the detectors that learn what each time of day looks like saw one instant.
    ts, x = daily(days=5, seed=3)
    x[3 * DAY + 600: 3 * DAY + 630] -= 30.0  # a dip at the hour of the daily peak
    iso = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": x})
    unix = pd.DataFrame({"timestamp": (ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), "value": x})
    by_iso, by_unix = detect_dataframe(iso), detect_dataframe(unix)
    assert by_iso["is_anomaly"].iloc[3 * DAY + 600: 3 * DAY + 630].any()
    pd.testing.assert_frame_equal(by_iso.drop(columns="timestamp"), by_unix.drop(columns="timestamp"))



def test_detect_reads_the_csv_exports_backtest_reads_with_the_same_verdicts(tmp_path):
    # It read only comma-separated files with a header: a semicolon export was one column ("no
    # numeric value column"), a headerless file lost its first row to the header (and wrote a
    # data row as the output's header), and a "hits" column before the timestamp was taken
    # for the timestamp because its name holds "ts".
    ts, x = daily(days=4, seed=5)
    x = np.round(x, 2)
    x[3 * DAY + 300] += 40.0
    stamps = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
    reference = tmp_path / "plain.csv"
    pd.DataFrame({"timestamp": stamps, "value": x}).to_csv(reference, index=False)
    verdicts = ["score", "is_anomaly", "severity", "score_zscore", "score_ewma", "score_seasonal", "score_gmm",
                "score_shape", "score_range"]
    expected = pd.read_csv(detect_csv(reference, tmp_path / "plain.out.csv")["output"])[verdicts]
    assert expected["is_anomaly"].iloc[3 * DAY + 300]
    plain = pd.DataFrame({"timestamp": stamps, "value": x})
    exports = {
        "semicolon.csv": (plain, {"sep": ";"}),
        "decimal_commas.csv": (plain, {"sep": ";", "decimal": ","}),  # a European spreadsheet's export
        "decimal_commas_headerless.csv": (plain, {"sep": ";", "decimal": ",", "header": False}),
        "headerless.csv": (plain, {"header": False}),
        "headerless_host_first.csv": (pd.DataFrame({"host": "web-1", "timestamp": stamps, "value": x}),
                                      {"header": False}),
        "headerless_value_first.csv": (pd.DataFrame({"value": x, "timestamp": stamps}), {"header": False}),
        "hits_first.csv": (pd.DataFrame({"hits": x, "timestamp": stamps}), {}),
        "saved_with_its_index.csv": (plain, {"index": True}),  # "Unnamed: 0" holds row numbers, not values
        "saved_series.csv": (pd.Series(x, index=pd.Index(stamps)), {"index": True}),  # header ",0"
        # One note with a decimal comma must not turn the values' decimal points into words.
        "tabs_with_a_note.tsv": (plain.assign(status=200, note=["3,5"] + ["ok"] * (len(x) - 1)), {"sep": "\t"}),
        # The date a number, the time of day beside it: the date is part of the timestamp, not the value.
        "date_number_and_time.csv": (pd.DataFrame({"date": ts.strftime("%Y%m%d").astype(int),
                                                   "time": ts.strftime("%H:%M"), "value": x}), {}),
    }
    for name, (frame, options) in exports.items():
        frame.to_csv(tmp_path / name, **{"index": False, **options})
        summary = detect_csv(tmp_path / name, tmp_path / f"{name}.out.csv")
        written = pd.read_csv(summary["output"])
        assert summary["rows"] == len(x) and len(written) == len(x), name
        pd.testing.assert_frame_equal(written[verdicts], expected, obj=name)


def test_a_timestamp_that_fails_is_refused_not_replaced_by_numbers_that_pass_for_unix_times(tmp_path):
    # Byte counts of 1e8-1e11 pass for Unix seconds: when the real timestamp column failed,
    # the search went on to them and scored the series against them, with no error.
    rows = "".join(f"{'n/a' if d == 13 else f'2026-03-{d:02d}T00:00:00Z'},{2_000_000_000 + d},{1_000_000_000 + d}\n"
                   for d in range(1, 20))
    (tmp_path / "in.csv").write_text("timestamp,bytes_in,bytes_out\n" + rows)
    with pytest.raises(ValueError, match=r"an empty \(or n/a\) timestamp in column 'timestamp' \(data row 13\)"):
        detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    (tmp_path / "in.csv").write_text("event_time,bytes_in\n" + "".join(r.rsplit(",", 1)[0] + "\n"
                                                                    for r in rows.splitlines()))
    with pytest.raises(ValueError, match=r"n/a\) timestamp in column 'event_time'"):
        detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    (tmp_path / "ok.csv").write_text("timestamp,value\n2026-11-01T00:00:00Z,1\n2026-11-01T00:01:00Z,2\n")
    with pytest.raises(ValueError, match="holds the timestamps"):
        detect_csv(tmp_path / "ok.csv", tmp_path / "out.csv", value_col="timestamp")


def test_a_column_named_value_is_the_value_despite_placeholders(tmp_path):
    # With more than a tenth of its cells "-", "value" was text to pandas and lost, without a
    # word, to the numeric column beside it.
    ts, x = daily(days=2, seed=9)
    cells = [("-" if i % 5 == 0 else f"{v:.3f}") for i, v in enumerate(x)]
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "latency_ms": 180.0, "value": cells}).to_csv(
        tmp_path / "in.csv", index=False)
    detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    scored = pd.read_csv(tmp_path / "out.csv")
    expected = detect_dataframe(pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                              "value": pd.to_numeric(pd.Series(cells), errors="coerce")}))
    np.testing.assert_allclose(scored["score"].to_numpy(dtype=float), expected["score"].to_numpy(dtype=float))


def test_numbered_columns_are_named_by_number():
    # timestamp_col=0 was taken for "not given" (0 is falsy), and the search went its own way.
    ts, x = daily(days=2, seed=7)
    frame = pd.DataFrame({0: "web-1", 1: ts.strftime("%Y-%m-%dT%H:%M:%SZ"), 2: x})
    with pytest.raises(ValueError, match="'web-1' in column 0 .* cannot be parsed"):
        detect_dataframe(frame, timestamp_col=0, value_col=2)
    assert detect_dataframe(frame, timestamp_col=1, value_col=2)["score"].notna().any()


def test_a_frame_with_numbered_columns_is_scored_like_a_named_one():
    # pd.read_csv(..., header=None) numbers the columns; finding the timestamp by name called
    # .lower() on 0 and ended in an AttributeError.
    ts, x = daily(days=2, seed=7)
    named = detect_dataframe(pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": x}))
    numbered = detect_dataframe(pd.DataFrame({0: ts.strftime("%Y-%m-%dT%H:%M:%SZ"), 1: x}))
    pd.testing.assert_frame_equal(numbered.iloc[:, 2:], named.iloc[:, 2:], check_column_type=False)

def test_detect_refuses_a_one_column_file_naming_the_separators(tmp_path):
    (tmp_path / "in.csv").write_text("timestamp value\n2026-11-01T00:00:00Z 1\n2026-11-01T00:01:00Z 2\n")
    with pytest.raises(ValueError, match="one column.*comma, semicolon, tab or pipe"):
        detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()

def test_rows_out_of_order_are_scored_in_file_order_and_counted(tmp_path):
    df = pd.DataFrame({"timestamp": ["2026-11-01 00:01", "2026-11-01 00:00", "2026-11-01 00:02"], "value": [1, 2, 3]})
    assert len(detect_dataframe(df)) == 3
    df.to_csv(tmp_path / "in.csv", index=False)
    assert detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")["out_of_order_rows"] == 1


def test_one_alarm_per_incident_and_a_new_incident_after_a_quiet_spell_alarms_again():
    # Two incidents 14 hours apart: once the first has been quiet for 6 hours (no point that
    # would alarm), the second is a new one and pages, where one-alarm-a-day kept it silent.
    def incidents(gap, between=None):
        ts, x = daily(days=5, seed=11)
        start = 3 * DAY + 100
        for at, height, width in ((start, 40.0, 30), (start + gap, -35.0, 30)) + ((between,) if between else ()):
            x[at: at + width] += height
        return ts, x, start

    ts, x, start = incidents(840)
    hits, whole = flagged(x, ts)
    assert (hits - start).tolist() == [0, 840]
    assert (flagged(x, ts, min_alarm_gap_minutes=DAY)[0] - start).tolist() == [0]
    # Not quiet: a point that would alarm 4 hours before the second keeps it the same incident.
    ts, y, start = incidents(840, between=(3 * DAY + 700, 45.0, 10))
    assert (flagged(y, ts)[0] - start).tolist() == [0]
    # Quiet, but within the 12 hours every alarm holds at least: one alarm.
    ts, z, start = incidents(480)
    assert (flagged(z, ts)[0] - start).tolist() == [0]

    # Carried across windows exactly; a state stored before the quiet clock existed starts it at 0.
    state, parts = None, []
    for lo in range(0, len(x), 360):
        if state is not None and lo == 3 * DAY:
            del state["since_unusual"]
            state = align_state(state, ["web/cpu"], ["web/cpu"], DetectorConfig())
        part, state = detect_chunk(x[None, lo:lo + 360], ts[lo:lo + 360], state)
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate([p.is_anomaly[0] for p in parts]), whole.is_anomaly[0])


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


# ---- the shape detector (core/shape.py) ------------------------------------------------------

def noisy_drop(days: int, start: int):
    """A noisy metric (level 50, sd 3) that drops by a quarter over three hours from `start`."""
    n = days * DAY
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    x = 50 + np.random.default_rng(5).normal(0, 3, n)
    x[start:] -= np.minimum(np.arange(n - start) / 180, 1.0) * 12.0
    return ts, x


def test_a_drop_is_caught_by_its_shape_before_the_statistics_see_it():
    # The baseline follows the drop, so the point never deviates by the material 20 %; the last
    # two hours, though, look like nothing in the past week.
    start = 6 * DAY
    ts, x = noisy_drop(9, start)
    hits, result = flagged(x, ts)
    statistics_only, _ = flagged(x, ts, shape_gate=0.0, shape_alarm=np.inf)
    assert hits.tolist() == [start + 104]  # during the drop, and once
    assert result.scores["shape"][0, hits[0]] >= DetectorConfig().shape_alarm
    assert statistics_only[0] > hits[0] + 60  # they alarm once the point has fallen far enough
    record, = anomaly_records(result, ["db/temperature"], ts)
    assert record["detectors"] == "shape" and "the last 2 h are" in record["explanation"]
    assert "past 7 days" in record["explanation"] and record["score_shape"] == result.scores["shape"][0, hits[0]]


def test_a_spike_the_metric_throws_every_day_stops_alarming_and_a_new_one_does_not():
    # A batch job doubles the load for 20 minutes at the same time every day: far from the
    # baseline every time, but after a few days not new. A spike of a shape never seen is.
    ts, x = daily(days=9, noise=1.0, seed=6)
    for day in range(9):
        x[day * DAY + 600: day * DAY + 620] += 40.0
    hits, result = flagged(x, ts)
    batch = [day * DAY + 600 + k for day in range(5, 9) for k in range(20)]
    assert result.scores["zscore"][0, batch].max() > DetectorConfig().threshold  # far from the baseline
    assert not np.isin(batch, hits).any()
    x[8 * DAY + 900: 8 * DAY + 960] += 60.0  # an hour at a level the metric never held
    hits, _ = flagged(x, ts)
    assert ((hits >= 8 * DAY + 900) & (hits < 8 * DAY + 960)).any()


def daily_job(days: int, heights, seed: int = 1):
    """A quiet metric (level 10, sd 0.3) with an 8-minute job at about 03:30 every day: its
    height and start (within half an hour) change from day to day."""
    n = days * DAY
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(seed)
    x = 10 + rng.normal(0, 0.3, n)
    for day, start in enumerate(210 + rng.integers(-30, 31, days)):
        x[day * DAY + start: day * DAY + start + 8] += heights[day]
    return ts, x


def test_a_daily_job_of_changing_height_is_a_recurrence_and_a_surge_of_it_is_not():
    # The job is 30-60 above a level of 10: far from the baseline, and as the height changes
    # its raw shape is new on many days; its shape at its own level and spread is yesterday's.
    heights = np.random.default_rng(2).uniform(30, 60, 11)
    ts, x = daily_job(11, heights)
    hits, result = flagged(x, ts)
    without, _ = flagged(x, ts, recurrence_correlation=np.inf)
    assert len(without) >= 5 and hits.size == 0
    assert np.nanmin(result.recurrence[0, without]) >= DetectorConfig().recurrence_correlation
    surge = x.copy()
    surge[10 * DAY:] = x[10 * DAY:] + 3 * (x[10 * DAY:] - 10)  # the same job, four times its size
    hits, _ = flagged(surge, ts)
    assert hits.size == 1 and 10 * DAY + 150 < hits[0] < 10 * DAY + 300
    elsewhere = x.copy()
    elsewhere[10 * DAY + 900: 10 * DAY + 908] += 45.0  # the same job at 15:00
    hits, _ = flagged(elsewhere, ts)
    assert hits.tolist() == [10 * DAY + 900]


def test_recurrence_is_the_best_correlation_with_the_same_time_of_earlier_days():
    from neuropilot_pipeline.core import shape

    rng = np.random.default_rng(4)
    day_slots, length, tol = 24, 4, 2  # hourly buckets, 4-hour shapes, +-2 hours
    n = 6 * day_slots
    buckets = 10 + np.sin(2 * np.pi * np.arange(n) / day_slots) + rng.normal(0, 0.4, n)
    slots = np.arange(n, dtype=float)
    slots[40:] += 1  # a missing bucket: slots, not positions, say what time of day it is
    cap = 200
    values, slot_ring = np.full((1, 2 * cap), np.nan), np.full((1, cap), np.nan)
    shape.replay_buckets(values, slot_ring, np.zeros((1, shape.N_SCALARS)), 0, buckets, slots, cap)

    def oracle(e, bound, max_scale, max_shift):
        a = buckets[e - length + 1: e + 1]
        best = np.nan
        for j in range(length - 1, e - length + 1):
            days = np.floor((slots[e] - slots[j]) / day_slots + 0.5)
            if days < 1 or abs(slots[e] - slots[j] - days * day_slots) > tol or slots[j - length + 1] < bound:
                continue
            b = buckets[j - length + 1: j + 1]
            if a.std() > max_scale * b.std() or abs(a.mean() - b.mean()) > max_shift * b.std():
                continue
            r = np.corrcoef(a, b)[0, 1]
            best = r if np.isnan(best) else max(best, r)
        return best

    checked = 0
    for e in range(day_slots + length, n):
        for bound, max_scale, max_shift in ((0, 2.0, 1.0), (slots[e] - 3 * day_slots, 1.2, 0.5), (0, 1e9, 1e9)):
            got = shape.recurrence(values, slot_ring, 0, e, length, cap, float(day_slots), float(tol), float(bound),
                                   max_scale, max_shift)
            want = oracle(e, bound, max_scale, max_shift)
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-9), (e, bound)
            checked += np.isfinite(want)
    assert checked > 200


def _pipeline_style(values, ts, config, history_minutes):
    """6-hour windows whose detector state is stored without the shape buckets and rebuilt
    from the raw values before each window, as the anomalies asset does."""
    from neuropilot_pipeline.core.detectors import persisted_state, rebuild_shape_state

    state, parts = None, []
    for lo in range(0, values.shape[1], 360):
        if state is not None:
            h = max(0, lo - history_minutes)
            stored = {k: np.array(v) for k, v in persisted_state(state).items()}
            state = rebuild_shape_state(stored, values[:, h:lo], ts[h:lo], config)
        part, state = detect_chunk(values[:, lo:lo + 360], ts[lo:lo + 360], state, config)
        parts.append(part)
    return parts


def test_windows_with_the_shape_state_rebuilt_from_raw_give_exactly_the_one_pass_results():
    from neuropilot_pipeline.core.detectors import shape_history_minutes

    config = DetectorConfig()
    ts, x = daily(days=11, noise=2.0, seed=7)
    gappy = x.copy()
    gappy[5 * DAY: 5 * DAY + 600] = np.nan  # ten hours of no data
    gappy[np.random.default_rng(8).integers(0, len(x), 400)] = np.nan
    gappy[8 * DAY:] -= np.linspace(0, 30, len(x) - 8 * DAY)
    _, job = daily_job(11, np.random.default_rng(9).uniform(30, 60, 11))  # recurrences reach 7 days back
    # Missed scrapes of 5 to 65 minutes, whose buckets are filled in: anywhere, just before and
    # after window starts, and across the oldest slot a rebuilt window's lags may use (the one
    # that needs the point before the gap in the history it reads).
    missed = x.copy()
    rng = np.random.default_rng(10)
    for at in rng.integers(0, len(x) - 70, 150):
        missed[at: at + rng.integers(5, 66)] = np.nan
    bound = int(shape_history_minutes(config)) - (config.shape_fill_slots + 1) * 5
    for lo in range(8 * DAY, len(x), 360):
        missed[lo - 20: lo] = missed[lo: lo + 15] = np.nan
        missed[lo - bound - 30: lo - bound + 25] = np.nan
    values = np.vstack([x, gappy, job, missed])
    whole, _ = detect_chunk(values, ts, None, config)
    parts = _pipeline_style(values, ts, config, int(shape_history_minutes(config)))
    for name in ("shape", "zscore", "seasonal", "range"):
        np.testing.assert_array_equal(np.concatenate([p.scores[name] for p in parts], axis=1), whole.scores[name])
    for name in ("recurrence", "level_hour", "range_low", "range_high"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts], axis=1), getattr(whole, name))
    np.testing.assert_array_equal(np.concatenate([p.is_anomaly for p in parts], axis=1), whole.is_anomaly)
    assert whole.is_anomaly[1].any() and np.isfinite(whole.scores["shape"]).mean() > 0.15
    assert np.isfinite(whole.recurrence[2, 8 * DAY:]).sum() > 20
    assert (whole.scores["range"][1] > DetectorConfig().range_margin).sum() > 60  # the slide leaves the range


def test_a_rebuilt_ring_holds_the_filled_in_buckets_a_window_may_use():
    # Scrapes missed across the oldest bucket a window's search may use: the carried ring holds
    # the buckets filled in there, so the rebuilt one must too, which needs the point before
    # the gap in the history it is rebuilt from.
    from neuropilot_pipeline.core import shape
    from neuropilot_pipeline.core.detectors import persisted_state, rebuild_shape_state, shape_history_minutes

    config = DetectorConfig()
    ts, x = daily(days=9, noise=2.0, seed=11)
    lo = 8 * DAY + 360  # a window start (06:00)
    minute = lambda t: t.value // 60_000_000_000  # noqa: E731
    oldest = shape._rebuilt_from(minute(ts[lo]) // 5, config.shape_lookback_days * 288, 72)  # 5-minute slots
    at = int(oldest * 5 - minute(ts[0]))  # its minute in the series
    x[at - 30: at + 25] = np.nan
    _, carried = detect_chunk(x[None, :lo], ts[:lo], None, config)
    h = lo - int(shape_history_minutes(config))
    rebuilt = rebuild_shape_state(persisted_state(carried), x[None, h:lo], ts[h:lo], config)

    def ring(state):  # the closed buckets from the oldest a window may use
        slots, values = state["shape_slots"][0], state["shape_values"][0, :len(state["shape_slots"][0])]
        filling = state["shape_scalars"][0, shape.CUR_SLOT]
        return {s: v for s, v in zip(slots, values) if oldest <= s < filling}
    assert {oldest, oldest + 1, oldest + 4} <= ring(carried).keys()  # filled in
    assert ring(rebuilt) == ring(carried)


def test_a_recurrence_is_sought_only_as_far_back_as_a_rebuilt_state_reaches():
    # With a 6-hour tolerance, the job at 00:02 on day 8 could match day 0's at 18:02, 7 days
    # and 6 hours before less 8 minutes; but that stretch starts before the week and the block
    # a pipeline window rebuilds, so neither run may use it: both alarm.
    from neuropilot_pipeline.core.detectors import shape_history_minutes

    config = DetectorConfig(recurrence_tolerance_minutes=360.0)
    ts, x = daily_job(9, np.zeros(9))
    for at in (18 * 60 + 2, 8 * DAY + 2):
        x[at: at + 8] += 45.0
    whole, _ = detect_chunk(x[None, :], ts, None, config)
    parts = _pipeline_style(x[None, :], ts, config, int(shape_history_minutes(config)))
    np.testing.assert_array_equal(np.concatenate([p.is_anomaly for p in parts], axis=1), whole.is_anomaly)
    np.testing.assert_array_equal(np.concatenate([p.recurrence for p in parts], axis=1), whole.recurrence)
    assert whole.is_anomaly[0, 8 * DAY + 2]


def test_the_stored_state_holds_no_week_of_buckets():
    from neuropilot_pipeline.core.detectors import persisted_state

    ts, x = daily(days=2)
    _, state = detect_chunk(x[None, :], ts, None)
    stored = persisted_state(state)
    assert {"shape_values", "shape_slots", "shape_sums"}.isdisjoint(stored)
    assert sum(v.nbytes for v in stored.values()) < 2_000  # per series; the buckets are ~90 kB


@pytest.mark.parametrize("hours", [1, 2])
def test_a_coarser_series_catches_the_day_its_cycle_stops(hours):
    # Hourly samples: the 11 buckets between two points are filled in, so a shape is 2 hours, as
    # for 5-minute data. Every 2 hours: a gap longer than shape_fill_minutes is left as it is, so
    # each point is its own bucket and a shape is 24 points (two days). Either way a day on
    # which the daily cycle stops is new; the same series without it raises nothing.
    per_day = 24 // hours
    n = 40 * per_day
    ts = pd.date_range("2026-11-01", periods=n, freq=f"{hours}h", tz="UTC")
    rng = np.random.default_rng(3)
    x = 50 + 20 * np.sin(2 * np.pi * np.arange(n) / per_day) + rng.normal(0, 2, n)
    hits, result = flagged(x, ts)
    assert hits.size == 0 and np.isfinite(result.scores["shape"][0, 7 * per_day:]).all()
    x[30 * per_day: 31 * per_day] = 50 + rng.normal(0, 2, per_day)
    hits, result = flagged(x, ts)
    assert 30 * per_day <= hits[0] < 31 * per_day
    assert result.scores["shape"][0, hits[0]] >= DetectorConfig().shape_alarm


def _hourly_knots(days, seed):
    """A metric that moves in straight lines between random values on the hour (a daily cycle
    plus noise), as 5-minute samples: (5-minute timestamps, values, which of them are on the hour)."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    knots = 50 + 20 * np.sin(2 * np.pi * np.arange(hours + 1) / 24) + rng.normal(0, 3, hours + 1)
    ts = pd.date_range("2026-11-01", periods=hours * 12, freq="5min", tz="UTC")
    x = np.interp(np.arange(hours * 12) / 12.0, np.arange(hours + 1), knots)
    return ts, x, np.arange(hours * 12) % 12 == 0


def test_missing_buckets_are_filled_in_so_a_shape_spans_the_same_time():
    # Between its hourly knots the metric is a straight line, so the buckets filled in when only
    # the hourly samples arrive (an export at one point an hour), or when 5-minute scrapes are
    # missed in runs of up to an hour, are the buckets the full series has: the shapes, and so
    # their scores, are the same. (Once the week's lookback is full: before that, a search may
    # reach the series' first buckets, which a gap across a block start leaves out for longer.)
    ts, x, on_the_hour = _hourly_knots(12, seed=4)
    later = np.arange(len(x)) >= 8 * 288
    full, _ = detect_chunk(x[None, :], ts, None)
    hourly_later = on_the_hour | ~later
    hourly, _ = detect_chunk(x[hourly_later][None, :], ts[hourly_later], None)
    rng = np.random.default_rng(5)
    missed = np.zeros(len(x), dtype=bool)
    for hour in range(8 * 24, len(x) // 12):  # runs within an hour: its line is the full series'
        first = rng.integers(1, 12)
        missed[hour * 12 + first: hour * 12 + rng.integers(first, 12) + 1] = True
    gappy, _ = detect_chunk(np.where(missed, np.nan, x)[None, :], ts, None)
    np.testing.assert_allclose(hourly.scores["shape"][0][later[hourly_later]],
                               full.scores["shape"][0][later & on_the_hour], rtol=1e-9)
    kept = ~missed & later
    assert 0.4 * later.sum() < kept.sum() < 0.8 * later.sum()
    np.testing.assert_allclose(gappy.scores["shape"][0][kept], full.scores["shape"][0][kept], rtol=1e-9)
    # Without the filling, the hourly points' shape is 24 of them, a day: another shape altogether.
    unfilled, _ = detect_chunk(x[hourly_later][None, :], ts[hourly_later], None, DetectorConfig(shape_fill_minutes=0))
    far = np.abs(unfilled.scores["shape"][0][later[hourly_later]] / full.scores["shape"][0][later & on_the_hour] - 1)
    assert np.nanmedian(far) > 0.2


def test_the_shape_alone_does_not_alarm_while_its_week_is_still_short():
    # The same drop on day 2: with two days behind it, every stretch looks new, so the shape
    # alone may not alarm before shape_warmup_days (3); the statistics, with a new shape, still do.
    start = 2 * DAY
    ts, x = noisy_drop(5, start)
    early, early_result = flagged(x, ts, shape_warmup_days=1.0)
    hits, result = flagged(x, ts)
    assert anomaly_records(early_result, ["db/temperature"], ts)[0]["detectors"] == "shape"
    first = anomaly_records(result, ["db/temperature"], ts)[0]
    assert start < hits[0] < start + 180 and first["ts"] == ts[hits[0]]
    assert set(first["detectors"].split(",")) & {"zscore", "ewma", "seasonal"}


def regimes(days: int, seed: int):
    """A metric that holds a level between 60 and 100 for 1 to 4 hours at a time, then another
    (noise sd 1): its 2-hour stretches differ a lot from one another, as a busy machine's do."""
    n = days * DAY
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(seed)
    x, t = np.empty(n), 0
    while t < n:
        hold = int(rng.integers(60, 240))
        x[t: t + hold] = rng.uniform(60, 100)
        t += hold
    return ts, x + rng.normal(0, 1.0, n)


def level_and_range_oracle(x, t, config=DetectorConfig()):
    """The level at minute t of a gapless 1-minute series starting on a 6-hour mark (the mean of
    the last hour's 5-minute buckets, the one filling included) and the lowest and highest
    5-minute bucket from 7 days to 12 hours before t's 6-hour block, from the definitions."""
    buckets = x[: len(x) // 5 * 5].reshape(-1, 5).mean(axis=1)
    slot, block = t // 5, t // 360 * 72
    hour = [*buckets[slot - 11: slot], x[slot * 5: t + 1].mean()]
    week = buckets[block - int(config.shape_lookback_days * 288): block - int(config.range_exclusion_minutes // 5) + 1]
    return np.mean(hour), week.min(), week.max()


def test_the_level_is_judged_against_the_range_of_the_week_before_the_block():
    ts, x = regimes(9, seed=2)
    block = 8 * DAY + 360
    edge = block - 720  # 12 hours before the block: the newest bucket its range reads
    x[edge: edge + 5], x[edge + 5: edge + 10] = 200.0, 300.0
    _, result = flagged(x, ts)
    assert result.range_high[0, block] == 200.0 and result.range_high[0, block + 360] == 300.0
    for t in range(7 * DAY + 3, 9 * DAY, 97):  # every bucket position, both sides of block starts
        level, low, high = level_and_range_oracle(x, t)
        assert result.level_hour[0, t] == pytest.approx(level, rel=1e-12)
        assert (result.range_low[0, t], result.range_high[0, t]) == (low, high)
        beyond = max(low - level, level - high, 0.0) / (high - low)
        assert result.scores["range"][0, t] == pytest.approx(beyond, rel=1e-12, abs=1e-15)
    assert np.isnan(result.scores["range"][0, : 7 * DAY]).all()  # a week behind it first


def test_a_slow_slide_below_the_weeks_range_alarms_when_it_leaves_the_range():
    # The metric holds a level 60-100 for hours at a time, then slides from 62 by 2 an hour. No
    # 2 hours of the slide are unusual next to the week's swings, and the baselines follow it;
    # its level, though, leaves the week's range, and it alarms the minute it is 10 % of the
    # range below its lowest 5 minutes.
    ts, x = regimes(10, seed=2)
    start = 9 * DAY
    x[start:] = 62 + np.random.default_rng(99).normal(0, 1.0, DAY) - np.arange(DAY) / 60 * 2.0
    hits, result = flagged(x, ts)
    without_range, _ = flagged(x, ts, range_margin=np.inf)

    def left_the_range(t):
        level, low, high = level_and_range_oracle(x, t)
        return level < low - DetectorConfig().range_margin * (high - low)

    expected = next(t for t in range(start, len(x)) if left_the_range(t))
    assert hits[hits >= start].tolist() == [expected] and 180 < expected - start < 300
    assert not (without_range >= start).any()  # 48 below where it started, and never flagged
    record = anomaly_records(result, ["db/temperature"], ts)[-1]
    assert record["detectors"] == "range" and record["score_range"] > 0.1
    assert "below the lowest 5-minute average of the past 7 days" in record["explanation"]


def test_a_level_shift_alarms_once_and_steady_growth_never():
    # A shift is beyond the week's range for up to 18 hours: one incident, one alarm; then the
    # shifted level is in the range. Growth of 2 a day on a daily swing of 40 stays within 4 %
    # of the range's width past its top, far from the 10 % that alarms.
    ts, x = daily(days=12, seed=14)
    x[8 * DAY + 300:] += 30
    hits, result = flagged(x, ts)
    assert hits.tolist() == [8 * DAY + 300]
    beyond = result.scores["range"][0]
    assert (beyond[8 * DAY + 300: 9 * DAY] > 0.1).sum() > 120 and (beyond[10 * DAY:] == 0).all()
    ts, x = daily(days=14, seed=12)
    x += 2.0 * np.arange(len(x)) / DAY
    hits, result = flagged(x, ts)
    assert hits.size == 0 and 0 < np.nanmax(result.scores["range"][0]) < 0.05


def test_a_weekly_cycle_alarms_on_the_first_weekend_only():
    # A service 40 % quieter at weekends, on top of its daily cycle. The first weekend is new;
    # from the second on, the week behind holds the last one, and none of the rules fires.
    n = 28 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")  # a Monday
    t = np.arange(n)
    weekend = ((t // DAY) % 7 >= 5).astype(float)
    x = 100 * (1 - 0.4 * weekend) * (1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY - np.pi / 2))
    hits, _ = flagged(x + np.random.default_rng(0).normal(0, 3, n), ts)
    assert hits.size and (hits < 8 * DAY).all()  # the first Saturday (and Monday) only


def test_heavy_tailed_noise_alarms_about_every_other_day_and_gaussian_noise_never():
    # A healthy metric with lognormal minutes (sigma 0.5: a minute at 3x the median every few
    # hours) gives the Gaussian threshold a few points a day; the shape gate and one alarm per
    # incident keep that to about one alarm every two days (README, "Heavy tails"). Gaussian
    # noise of any spread: none.
    n = 14 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    hits, _ = flagged(100 * rng.lognormal(0, 0.5, n), ts)
    assert 0 < hits.size <= 7
    for spread in (10, 30):
        hits, _ = flagged(100 + spread * np.random.default_rng(1).normal(0, 1, n), ts)
        assert hits.size == 0


def test_a_series_that_starts_at_zero_gets_readable_scores():
    # The baseline used to start from the first value with no spread, and winsorising at 4x a
    # spread of ~0 held it near 0 for hours: z-scores of 1e11 on a healthy series.
    n = 3 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = np.r_[0.0, 100 + 10 * np.random.default_rng(1).normal(0, 1, n - 1)]
    hits, result = flagged(x, ts)
    assert hits.size == 0
    z = result.scores["zscore"][0]
    assert np.nanmax(z) < 10
    assert np.nanmax(result.scores["ewma"][0]) < 10
    assert np.isnan(z[:29]).all() and np.isfinite(z[30:]).all()  # no spread from fewer than 30 points


def error_rate(days, seed):
    """A healthy service's error rate in %: 0 most minutes, a stray failed request in 2 % of them."""
    rng = np.random.default_rng(seed)
    n = days * DAY
    return np.where(rng.random(n) < 0.02, 0.05 * rng.random(n), 0.0)


@pytest.mark.parametrize("seed", range(3))
def test_an_error_rate_at_zero_alarms_on_an_incident_not_on_each_stray_error(seed):
    n = 7 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = error_rate(7, seed)
    # Without a floor its baseline is 0 with no spread: every stray error is "material" and
    # millions of deviations out, and it alarms as often as suppression allows.
    without, _ = detect_chunk(x[None, :], ts, None)
    assert without.is_anomaly.sum() >= 5
    calm, result = detect_chunk(x[None, :], ts, None, min_deviation=0.5)
    assert calm.is_anomaly.sum() == 0
    assert np.nanmax(calm.scores["zscore"][0, DAY:]) < 1
    incident = x.copy()
    incident[5 * DAY + 600:5 * DAY + 630] = 3.0  # 3 % of requests failing for 30 minutes
    found, _ = detect_chunk(incident[None, :], ts, None, min_deviation=0.5)
    assert np.flatnonzero(found.is_anomaly[0]).tolist() == [5 * DAY + 600]
    assert found.severity[0, 5 * DAY + 600] == 4  # critical


def test_detect_takes_a_min_deviation_and_refuses_a_negative_one(tmp_path):
    from neuropilot_pipeline.cli import main

    n = 7 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": error_rate(7, 0)}).to_csv(
        tmp_path / "errors.csv", index=False)
    assert main(["detect", str(tmp_path / "errors.csv"), "-o", str(tmp_path / "a.csv")]) == 0
    assert pd.read_csv(tmp_path / "a.csv")["is_anomaly"].sum() >= 5
    assert main(["detect", str(tmp_path / "errors.csv"), "-o", str(tmp_path / "b.csv"), "--min-deviation", "0.5"]) == 0
    assert pd.read_csv(tmp_path / "b.csv")["is_anomaly"].sum() == 0
    with pytest.raises(SystemExit):
        main(["detect", str(tmp_path / "errors.csv"), "-o", str(tmp_path / "c.csv"), "--min-deviation", "-1"])
    assert not (tmp_path / "c.csv").exists()


def test_input_columns_named_like_a_verdict_are_kept_renamed(tmp_path):
    n = 2 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = 100 + np.random.default_rng(0).normal(0, 1, n)
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": x, "score": 0.5, "score_input": 7,
                  "severity": "sev-" + pd.Series(range(n)).astype(str)}).to_csv(tmp_path / "in.csv", index=False)
    summary = detect_csv(tmp_path / "in.csv", tmp_path / "out.csv")
    assert summary["renamed_input_columns"] == {"score": "score_input2", "severity": "severity_input"}
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["severity_input"].tolist() == [f"sev-{i}" for i in range(n)]
    assert (out["score_input2"] == 0.5).all() and (out["score_input"] == 7).all()
    assert set(out["severity"]) <= {"none", "low", "medium", "high", "critical"}
    # detect's own output scored again: the first verdicts are kept beside the new ones.
    again = detect_csv(tmp_path / "out.csv", tmp_path / "again.csv", value_col="value")
    assert again["renamed_input_columns"]["score"] == "score_input3"
    twice = pd.read_csv(tmp_path / "again.csv")
    np.testing.assert_allclose(twice["score"], twice["score_input3"], equal_nan=True)
    assert (twice["is_anomaly"] == twice["is_anomaly_input"]).all()


def test_an_error_rate_sliding_up_over_days_alarms_by_its_range():
    # The baseline follows a slow slide, so no point is ever min_deviation from it; the last
    # hour's level is, beyond the week's range.
    n = 12 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = error_rate(12, 0)
    x[8 * DAY:] += np.minimum(np.arange(4 * DAY) / (2 * DAY), 1) * 3.0  # 0 -> 3 % over two days
    result, _ = detect_chunk(x[None, :], ts, None, min_deviation=0.5)
    hits = np.flatnonzero(result.is_anomaly[0])
    assert hits.size and 8 * DAY < hits[0] < 9 * DAY
    assert result.scores["range"][0, hits[0]] > 0.1
    assert result.level_hour[0, hits[0]] - result.range_high[0, hits[0]] >= 0.5


def test_an_outlier_among_the_first_points_does_not_hide_a_later_incident():
    n = 3 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = 200 + 5 * np.random.default_rng(0).normal(0, 1, n)  # a p95 latency in ms
    x[3] = 10_000  # an overloaded minute while the baseline starts
    x[26 * 60:26 * 60 + 30] = 300
    hits, result = flagged(x, ts)
    assert hits.tolist() == [26 * 60]
    assert result.std[0, 26 * 60] == pytest.approx(20, rel=0.01)  # the floor, 10 % of the level: not inflated


def test_an_hourly_series_is_scored_once_its_first_hours_are_in():
    ts = pd.date_range("2026-11-02", periods=20 * 24, freq="1h", tz="UTC")
    x = 100 + 5 * np.random.default_rng(1).normal(0, 1, len(ts))
    x[[27, 200]] = 200
    hits, result = flagged(x, ts)
    assert hits.tolist() == [27, 200]
    assert np.isnan(result.scores["zscore"][0, :6]).all() and np.isfinite(result.scores["zscore"][0, 7:]).all()


def test_the_explanation_says_a_change_from_a_baseline_near_zero_in_units():
    n = 7 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = error_rate(7, 0)
    x[5 * DAY + 600:5 * DAY + 630] = 3.0
    result, _ = detect_chunk(x[None, :], ts, None, min_deviation=0.5)
    from neuropilot_pipeline.core.detectors import _explain

    # Ten minutes in, the short-term mean (span 20) is ~1.9 points above a baseline of ~0: far past the
    # threshold, and said in points, not as a share of a baseline of 0.
    fired, text = _explain(result, 0, 5 * DAY + 610, DetectorConfig())
    assert "ewma" in fired
    ewma_part = next(p for p in text.split("; ") if p.startswith("ewma"))
    assert "%" not in ewma_part and "smallest material change 0.5" in ewma_part
    assert float(ewma_part.split("deviates ")[1].split(" ")[0]) == pytest.approx(3 * (1 - (19 / 21) ** 10), rel=0.05)


def test_a_frame_with_two_columns_named_like_a_verdict_keeps_both():
    n = DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    df = pd.DataFrame([ts.strftime("%Y-%m-%dT%H:%M:%SZ"), 100 + np.zeros(n), np.ones(n), 2 * np.ones(n)]).T
    df.columns = ["timestamp", "value", "score", "score"]
    out = detect_dataframe(df)
    assert list(out.columns[:4]) == ["timestamp", "value", "score_input", "score_input2"]
    assert (out["score_input2"] == 2).all()
    assert out.attrs["renamed_input_columns"] == {"score": ["score_input", "score_input2"]}


def test_a_quiet_services_single_failed_minutes_do_not_page():
    # One failed request in a minute of 50 is 2 %: over the 0.5-point floor, but a single minute.
    n = 10 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = error_rate(10, 1)
    x[np.arange(DAY, n, 7 * 60 + 13)] = 2.0  # one such minute every 7 hours or so
    result, _ = detect_chunk(x[None, :], ts, None, min_deviation=0.5)
    assert result.is_anomaly.sum() == 0


def test_a_series_mostly_at_zero_from_the_start_gets_a_spread():
    # Over half of the first points are 0, so their median absolute deviation is 0; the
    # baseline's spread comes from their mean absolute deviation instead of collapsing.
    n = 7 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    rng = np.random.default_rng(3)
    x = np.where(rng.random(n) < 0.4, rng.integers(1, 5, n), 0).astype(float)
    hits, result = flagged(x, ts)
    assert hits.size == 0 and np.nanmax(result.scores["zscore"][0]) < 10


def test_a_state_stored_before_startup_values_existed_carries_on():
    # A series that began 20 minutes before the end of a window stored by the earlier code:
    # a count under 30 and no startup points. It must carry on from its baseline, not restart
    # from startup points it does not have.
    n = 3 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = np.full(n, np.nan)
    x[340:] = 200 + np.random.default_rng(0).normal(0, 1, n - 340)
    x[2 * DAY:2 * DAY + 30] *= 1.6
    whole, _ = detect_chunk(x[None, :], ts, None)
    _, state = detect_chunk(x[None, :360], ts[:360], None)
    old = {k: v for k, v in state.items() if k != "startup_values"}
    old["mean"], old["var"] = np.array([x[340]]), np.array([0.0])  # the earlier code's start: the first value
    resumed, _ = detect_chunk(x[None, 360:], ts[360:], align_state(old, ["s"], ["s"], DetectorConfig()))
    assert np.isfinite(resumed.baseline[0, -1])
    assert np.flatnonzero(resumed.is_anomaly[0]).tolist() == [2 * DAY - 360]
    assert np.flatnonzero(whole.is_anomaly[0]).tolist() == [2 * DAY]


def test_a_baseline_that_started_stays_started_when_the_clock_steps_back():
    minutes = np.r_[np.arange(0, 361, 60), 300, np.arange(420, 3 * DAY, 60)]
    ts = pd.Timestamp("2026-11-02", tz="UTC") + pd.to_timedelta(minutes, unit="min")
    x = 10 + np.random.default_rng(0).normal(0, 1, len(minutes))
    result, state = detect_chunk(x[None, :], ts, None)
    assert np.isfinite(result.scores["zscore"][0, 7:]).all()
    assert np.isnan(state["startup_values"][0, 7:]).all()  # the startup ended at 6 hours and was not reopened


def test_an_overloaded_minute_among_a_bucketed_series_first_points_does_not_inflate_its_spread():
    # A p95 rounded to histogram buckets is one value most minutes (MAD 0); the stand-in spread
    # leaves out the largest deviations, so the 10 s minute does not hide the next day's incident.
    n = 3 * DAY
    ts = pd.date_range("2026-11-02", periods=n, freq="1min", tz="UTC")
    x = np.where(np.random.default_rng(0).random(n) < 0.03, 300.0, 250.0)
    x[3] = 10_000
    x[26 * 60:26 * 60 + 30] = 400
    hits, result = flagged(x, ts)
    assert hits.tolist() == [26 * 60]
    assert result.scores["zscore"][0, 26 * 60] > 5
