import numpy as np
import pandas as pd

from neuropilot_pipeline.core.service_model import FIXED_BASELINE, Thresholds
from neuropilot_pipeline.core.telemetry import METRIC_COLUMNS, ServiceProfile, SimulatedService, load_demand_trace

ORIGIN = pd.Timestamp("2026-11-01", tz="UTC")


def service(name="web", index=0):
    return SimulatedService(ServiceProfile.for_service(name, 40, len(load_demand_trace()), index), ORIGIN)


def test_window_has_every_metric_every_minute_and_follows_the_trace():
    df, state = service().window(ORIGIN, 360, FIXED_BASELINE, None)
    assert list(df.columns) == ["service", "ts", *METRIC_COLUMNS]
    assert len(df) == 360 and df["ts"].is_unique and df[list(METRIC_COLUMNS)].notna().all().all()
    trace = load_demand_trace()
    np.testing.assert_allclose(df["request_rate_per_s"] / trace[:360] * 60, service().scale)
    np.testing.assert_allclose(df["cost_usd"], df["instance_count"] * 0.0464 / 60)
    assert state["minute"] == 360


def test_windows_resume_from_the_carried_state():
    sim = service()
    a, state = sim.window(ORIGIN, 360, FIXED_BASELINE, None)
    b, _ = sim.window(ORIGIN + pd.Timedelta(hours=6), 360, FIXED_BASELINE, state)
    whole, _ = sim.window(ORIGIN, 720, FIXED_BASELINE, None)
    np.testing.assert_array_equal(np.r_[a["instance_count"], b["instance_count"]], whole["instance_count"])


def test_thresholds_in_force_change_what_the_service_does():
    sim = service()
    eager, _ = sim.window(ORIGIN, 360, Thresholds(60, 20, 250, 2, 200), None)
    lazy, _ = sim.window(ORIGIN, 360, Thresholds(90, 60, 250, 2, 200), None)
    assert eager["instance_count"].mean() > lazy["instance_count"].mean()
    assert eager["cpu_percent"].mean() < lazy["cpu_percent"].mean()


def test_other_services_are_shifted_rescaled_copies():
    web, api = service("web", 0), service("api", 1)
    assert api.profile.offset_minutes != 0 and api.profile.peak_instances != 40
    a, _ = api.window(ORIGIN, 60, FIXED_BASELINE, None)
    w, _ = web.window(ORIGIN, 60, FIXED_BASELINE, None)
    assert not np.allclose(a["request_rate_per_s"], w["request_rate_per_s"])


def test_window_quality_counts_what_each_service_is_missing():
    # raw_metrics' quality metadata, per service: minutes with no value at all, resent
    # timestamps, NaN and Inf values, services that sent nothing; rows of services not asked
    # about (or with no service) count for none.
    from neuropilot_pipeline.core.quality import window_quality

    start = pd.Timestamp("2026-11-02", tz="UTC")
    ts = pd.date_range(start, periods=10, freq="1min")
    api = pd.DataFrame({"service": "api", "ts": ts, "cpu": np.arange(10.0), "mem": np.arange(10.0)})
    api.loc[2, ["cpu", "mem"]] = np.nan   # minute 2: no value at all, so missing
    api.loc[3, "cpu"] = np.nan            # minute 3: one value left, so present
    api.loc[4, "mem"] = np.inf
    api = api.drop(index=[7, 8])          # minutes 7 and 8 never sent
    resent = api.iloc[[0, 1]]             # minutes 0 and 1 sent twice
    late = api.iloc[[5]].assign(ts=ts[5] + pd.Timedelta(seconds=30))  # a second sample in minute 5
    web = pd.DataFrame({"service": "web", "ts": ts, "cpu": 1.0, "mem": 1.0})
    other = pd.DataFrame({"service": ["db", None], "ts": [ts[0], ts[1]], "cpu": np.nan, "mem": np.inf})
    frame = pd.concat([api, resent, late, web, other], ignore_index=True)
    q = window_quality(frame, ["cpu", "mem"], start, start + pd.Timedelta(minutes=10), ["api", "web", "cache"])
    assert q["per_service"]["api"] == {"missing_minutes": 3, "duplicate_timestamps": 2,
                                       "nan_values": 3, "inf_values": 1}
    assert q["per_service"]["web"] == {"missing_minutes": 0, "duplicate_timestamps": 0, "nan_values": 0, "inf_values": 0}
    assert q["per_service"]["cache"]["missing_minutes"] == 10
    assert q["absent_services"] == ["cache"]
    assert (q["missing_minutes"], q["duplicate_timestamps"], q["nan_values"], q["inf_values"]) == (13, 2, 3, 1)
