import pandas as pd
import pytest

from neuropilot_pipeline.core.report import (
    cost_projection, health_score, recommendations, scaling_actions, service_report, trend_direction, trends,
)


def test_health_score_by_the_seed_weights():
    h = health_score(p95_ms=200, error_rate_percent=1, cpu_percent=60, memory_percent=50)
    assert h["components"] == {"latency": 50.0, "errors": 80.0, "cpu": 40.0, "memory": 50.0}
    assert h["score"] == pytest.approx(0.3 * 50 + 0.3 * 80 + 0.2 * 40 + 0.2 * 50)  # 57
    assert h["status"] == "unhealthy"
    assert health_score(1000, 10, 120, 100)["score"] == 0.0  # components floor at zero


@pytest.mark.parametrize("change, direction", [(10.01, "increasing"), (10.0, "stable"), (-10.0, "stable"),
                                               (-10.01, "decreasing"), (None, "unknown")])
def test_trend_thresholds(change, direction):
    assert trend_direction(change) == direction


def test_trends_against_previous_day_and_seven_day_baseline():
    day = pd.DataFrame({"cpu_percent": [60.0, 60.0]})
    prev = pd.DataFrame({"cpu_percent": [50.0, 50.0]})
    base = pd.DataFrame({"cpu_percent": [58.0, 58.0]})
    t = trends(day, prev, base, metrics=["cpu_percent"])["cpu_percent"]
    assert t["change_pct"] == 20.0 and t["direction"] == "increasing"
    assert t["vs_baseline_pct"] == pytest.approx(3.45, abs=0.01) and t["vs_baseline_direction"] == "stable"


def test_cost_projection_is_daily_average_times_thirty():
    c = cost_projection([2.0, 2.0, 2.5], budget=50.0, today_cost=2.5)
    assert c["daily_average"] == pytest.approx(2.1667, abs=1e-4)
    assert c["projected_monthly"] == 65.0
    assert c["variance_percent"] == 30.0 and c["status"] == "over_budget"


def test_recommendations_follow_the_seed_rules():
    recs = recommendations(health=65, p95_ms=250, error_rate_percent=3, cost_variance_percent=25, cpu_percent=85)
    text = " ".join(recs)
    for phrase in ("review application logs", "indexes", "recent deployments", "scaling thresholds", "scale up or optimise"):
        assert phrase in text
    assert recommendations(90, 100, 0.1, 5, 50) == []
    assert "scale down" in recommendations(90, 100, 0.1, 5, 20)[0]


def test_scaling_actions_list_every_instance_change():
    ts = pd.date_range("2026-11-01", periods=5, freq="1min", tz="UTC")
    day = pd.DataFrame({"ts": ts, "instance_count": [2, 2, 3, 3, 2]})
    assert [(a["from"], a["to"]) for a in scaling_actions(day)] == [(2, 3), (3, 2)]


def test_service_report_sections_and_sla():
    ts = pd.date_range("2026-11-01", periods=4, freq="1min", tz="UTC")
    day = pd.DataFrame({"ts": ts, "cpu_percent": 50.0, "memory_percent": 40.0, "p95_latency_ms": [100, 100, 100, 300],
                        "error_rate_percent": 0.1, "request_rate_per_s": 10.0, "db_query_p95_ms": 5.0,
                        "instance_count": [2, 2, 3, 3], "cost_usd": 0.01})
    anomalies = pd.DataFrame({"ts": [ts[3]], "metric": ["p95_latency_ms"], "severity": ["high"], "score": [4.5],
                              "value": [300.0], "explanation": ["zscore fired"]})
    decisions = pd.DataFrame({"partition": ["2026-11-01-00:00"], "old_cpu_scale_up_threshold": [80],
                              "new_cpu_scale_up_threshold": [85], "reason": ["SLA met, cost high"], "phase": ["learning"]})
    r = service_report("web", day, day.iloc[0:0], day, anomalies, decisions, [1.0], {"version": "abc", "loss": 0.03},
                       sla_target=99.95, slo_p95_ms=250, cost_budget=50)
    assert r["sla"] == {"good_minutes": 3, "minutes": 4, "sla_percent": 75.0, "target": 99.95, "met": False}
    assert r["anomalies"]["by_severity"]["high"] == 1 and r["anomalies"]["top"][0]["explanation"] == "zscore fired"
    assert r["thresholds"]["changes"][0] == {"partition": "2026-11-01-00:00", "name": "cpu_scale_up_threshold",
                                             "from": 80, "to": 85, "reason": "SLA met, cost high", "applied": False}
    assert r["learning"]["status"] == "converging" and r["learning"]["policy_phase"] == "learning"
    assert r["trends"]["cpu_percent"]["direction"] == "unknown"


def test_charts_of_several_services_render_on_a_process_pool(tmp_path):
    # daily_report draws the charted services' PNGs on every core, on workers started (and
    # warmed up with a throw-away chart) while the report is computed: each service's files must
    # come back under its own name, whole, and the same bytes as drawn in the run's own process.
    import numpy as np
    import pandas as pd

    from neuropilot_pipeline.core.parallel import map_processes, started_processes
    from neuropilot_pipeline.core.report_render import render_charts_of, warm_up
    from neuropilot_pipeline.core.telemetry import METRIC_COLUMNS

    ts = pd.date_range("2026-11-02", periods=120, freq="1min", tz="UTC")

    def jobs(folder):
        folder.mkdir()
        out = []
        for i, service in enumerate(["a", "b", "c", "d"]):
            day = pd.DataFrame({"ts": ts, **{m: np.linspace(1, 2 + i, len(ts)) for m in METRIC_COLUMNS}})
            costs = pd.Series([1.0 + i], index=[pd.Timestamp("2026-11-02", tz="UTC")])
            out.append((folder, "daily_report_20261102", service, day, day.iloc[0:0], pd.DataFrame(),
                        pd.DataFrame(), costs, 2.0))
        return out

    fresh = map_processes(render_charts_of, jobs(tmp_path / "fresh"), workers=2, min_items=2)
    with started_processes(2, warm_up=warm_up) as pool:
        warmed = map_processes(render_charts_of, jobs(tmp_path / "warmed"), workers=2, min_items=2, pool=pool)
    here = map_processes(render_charts_of, jobs(tmp_path / "here"), workers=1)
    assert fresh == warmed == here
    for service, files in zip(["a", "b", "c", "d"], fresh):
        assert files and all(f"_{service}_" in name for name in files.values())
        for name in files.values():
            png = (tmp_path / "here" / name).read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert (tmp_path / "fresh" / name).read_bytes() == png == (tmp_path / "warmed" / name).read_bytes()


def test_a_metric_chart_shows_only_its_own_metric(tmp_path):
    # The eight metric charts are drawn on one reused figure: nothing of one chart (its
    # anomaly marks, its value range) may show on the next.
    import numpy as np
    from PIL import Image

    from neuropilot_pipeline.core.report_render import METRIC_LABELS, render_charts
    from neuropilot_pipeline.core.telemetry import METRIC_COLUMNS

    ts = pd.date_range("2026-11-02", periods=240, freq="1min", tz="UTC")
    history_ts = pd.date_range("2026-11-01", periods=1440, freq="1min", tz="UTC")
    wave = lambda n, k: 50 + 10 * np.sin(np.arange(n) / (20.0 + k))  # noqa: E731
    day = pd.DataFrame({"ts": ts, **{m: wave(len(ts), k) for k, m in enumerate(METRIC_COLUMNS)}})
    history = pd.DataFrame({"ts": history_ts, **{m: wave(len(history_ts), k) for k, m in enumerate(METRIC_COLUMNS)}})
    first, second = list(METRIC_LABELS)[:2]
    marks = pd.DataFrame({"metric": [first], "ts": [ts[100]], "value": [float(day[first].iloc[100])]})
    costs = pd.Series([1.0], index=[pd.Timestamp("2026-11-02", tz="UTC")])

    def draw(folder, frame, anomalies):
        folder.mkdir()
        charts = render_charts(folder, "r", "api", frame, history, anomalies, pd.DataFrame(), costs, 2.0)
        return {m: np.asarray(Image.open(folder / charts[m]).convert("RGB")) for m in METRIC_LABELS}

    def red_pixels(image):  # the anomaly marks' colour, #d62728
        return int((np.abs(image.astype(int) - [0xd6, 0x27, 0x28]).sum(axis=-1) < 40).sum())

    plain = draw(tmp_path / "plain", day, pd.DataFrame())
    marked = draw(tmp_path / "marked", day, marks)
    assert red_pixels(marked[first]) > 20 and red_pixels(plain[first]) == 0
    for metric in list(METRIC_LABELS)[1:]:
        assert red_pixels(marked[metric]) == 0, f"{metric}'s chart shows {first}'s anomaly"
        assert np.array_equal(marked[metric], plain[metric])
    # A first metric a thousand times larger changes its own chart, not the next one's scale.
    scaled = draw(tmp_path / "scaled", day.assign(**{first: day[first] * 1000}), pd.DataFrame())
    assert not np.array_equal(scaled[first], plain[first])
    assert all(np.array_equal(scaled[m], plain[m]) for m in list(METRIC_LABELS)[1:]), f"{second} kept {first}'s scale"
