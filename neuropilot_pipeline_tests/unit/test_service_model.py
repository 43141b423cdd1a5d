"""The reference service model on cases small enough to work out by hand."""

import math

import numpy as np
import pytest

from neuropilot_pipeline.core.service_model import (
    FIXED_BASELINE, AutoscaledService, ServiceParams, Thresholds, erlang_c, oracle_instances, p95_seconds,
    scale_factor_for_peak, tail_probability,
)

ONE_SLOT = ServiceParams(slots_per_instance=1)  # mu = 20 req/s per server, 1,200 per minute
CALM = Thresholds(80, 30, 250, 1, 10)


def test_erlang_c_of_one_server_is_utilisation():
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert erlang_c(2, 0.5) == pytest.approx(0.1)  # B2 = 1/13, C = (2/13) / (20/13)


def test_mm1_response_time_is_exponential_in_mu_minus_lambda():
    # M/M/1: P(T > t) = exp(-(mu - lambda) t), so p95 = ln(20) / (mu - lambda).
    assert tail_probability(0.1, 10.0, 1, ONE_SLOT) == pytest.approx(math.exp(-1.0))
    assert p95_seconds(10.0, 1, ONE_SLOT) == pytest.approx(math.log(20) / 10, abs=2e-6)


def test_mm2_tail_by_hand():
    # a = 0.5, C = 0.1, theta = 30: P(T > t) = 1.2 e^-20t - 0.2 e^-30t.
    for t in (0.05, 0.1, 0.25):
        assert tail_probability(t, 10.0, 2, ONE_SLOT) == pytest.approx(1.2 * math.exp(-20 * t) - 0.2 * math.exp(-30 * t))
    t95 = p95_seconds(10.0, 2, ONE_SLOT)
    assert 1.2 * math.exp(-20 * t95) - 0.2 * math.exp(-30 * t95) == pytest.approx(0.05, abs=1e-5)


def test_overload_has_infinite_p95_and_idle_service_is_pure_service_time():
    assert p95_seconds(20.0, 1, ONE_SLOT) == math.inf
    assert p95_seconds(0.0, 3, ONE_SLOT) == pytest.approx(math.log(20) / 20, abs=2e-6)


def test_oracle_is_the_smallest_instance_count_within_the_slo():
    assert oracle_instances(0.0, ONE_SLOT) == 1
    assert oracle_instances(10.0, ONE_SLOT) == 2  # one server: p95 300 ms > 250 ms
    default = ServiceParams()
    for lam in (5.0, 150.0, 1234.5):
        n = oracle_instances(lam, default)
        assert p95_seconds(lam, n * 4, default) <= 0.25 < p95_seconds(lam, (n - 1) * 4, default) if n > 1 else True


def test_autoscaler_minute_by_minute_by_hand():
    # 600 requests/min = 10 req/s. Start: oracle = 2 ready. Minute 0: u = 25 % < 30 ->
    # desired ceil(2 * 25 / 80) = 1, scale in to 1. Minute 1: one server, p95 300 ms > 250:
    # scale out, ready at 1 + 1 + 3 = 5; minutes 2-4: latency still high, one more each minute
    # (provisioned + 1). Minute 5: the first new instance serves, p95 back within the SLO.
    out = AutoscaledService(ONE_SLOT).run(np.full(6, 600.0), CALM)
    assert list(out["ready"]) == [2, 1, 1, 1, 1, 2]
    assert list(out["booting"]) == [0, 0, 1, 2, 3, 3]
    assert list(out["good"]) == [True, False, False, False, False, True]
    assert out["p95_ms"][1] == pytest.approx(1000 * math.log(20) / 10, abs=0.01)
    assert out["utilisation_pct"][1] == pytest.approx(50.0)
    # Booting instances are billed: minute 5 pays for 2 ready + 3 booting.
    assert out["cost_usd"][5] == pytest.approx(5 * ONE_SLOT.price_per_instance_hour / 60)


def test_scale_in_waits_for_the_largest_recent_recommendation_and_cancels_booting_first():
    svc = AutoscaledService(ONE_SLOT, state={"ready": 1, "booting": [10, 11], "backlog": 0.0,
                                             "desired_history": [], "minute": 0})
    out = svc.run(np.full(1, 60.0), CALM)  # 1 req/s: u = 5 % -> desired 1, clamp 1; provisioned 3
    assert out["desired"][0] == 1
    assert svc.state["booting"] == [] and svc.state["ready"] == 1  # both booting cancelled, newest first
    svc = AutoscaledService(ONE_SLOT, state={"ready": 3, "booting": [], "backlog": 0.0,
                                             "desired_history": [3, 3, 3, 3], "minute": 0})
    svc.run(np.full(1, 60.0), CALM)
    assert svc.state["ready"] == 3  # stabilisation: the last 5 minutes wanted 3


def test_overload_carries_backlog_and_the_next_minute_is_bad():
    svc = AutoscaledService(ONE_SLOT, state={"ready": 1, "booting": [], "backlog": 0.0,
                                             "desired_history": [], "minute": 0})
    out = svc.run(np.array([1500.0, 0.0]), Thresholds(80, 30, 250, 1, 1))
    assert out["p95_ms"][0] == math.inf and out["backlog"][0] == pytest.approx(300.0)
    assert out["lambda_per_s"][1] == pytest.approx(300.0 / 60)
    assert not out["good"][1]  # it started with backlog


def test_chunked_run_equals_one_run_even_when_thresholds_change():
    rng = np.random.default_rng(1)
    demand = rng.gamma(2.0, 3000.0, 900)
    params = ServiceParams()
    whole = AutoscaledService(params)
    a = whole.run(demand[:450], FIXED_BASELINE)
    b = whole.run(demand[450:], Thresholds(75, 50, 300, 2, 200))
    first = AutoscaledService(params)
    c = first.run(demand[:450], FIXED_BASELINE)
    resumed = AutoscaledService(params, state=first.state)
    d = resumed.run(demand[450:], Thresholds(75, 50, 300, 2, 200))
    for key in a:
        np.testing.assert_array_equal(np.r_[a[key], b[key]], np.r_[c[key], d[key]])


def test_scale_factor_makes_the_peak_need_exactly_the_peak_instances():
    demand = np.array([100.0, 5000.0, 2500.0])
    params = ServiceParams()
    f = scale_factor_for_peak(demand, 40, params)
    assert oracle_instances(f * 5000 / 60, params) == 40
    assert oracle_instances(f * (1 + 1e-8) * 5000 / 60, params) == 41


def test_compiled_replay_gives_the_same_bad_minutes_and_cost_as_run():
    # The learning policy decides from replay_totals; it must be `run` exactly, including
    # minutes whose p95 lies within a microsecond of the SLO or latency threshold, overloads
    # with backlog, scale-in holds and booting cancellations.
    from neuropilot_pipeline.core.service_model import replay_totals
    from neuropilot_pipeline.core.telemetry import load_demand_trace

    trace = load_demand_trace()
    factor = scale_factor_for_peak(trace, 40)
    rng = np.random.default_rng(7)
    candidates = [Thresholds(up, down, lat, lo, hi) for up, down, lat, lo, hi in
                  [(80, 30, 250, 2, 200), (90, 70, 250, 1, 30), (60, 20, 120, 3, 200), (85, 40, 400, 1, 12),
                   (70, 60, 250.0001, 2, 50), (95, 10, 1000, 20, 500)]]
    for _ in range(4):
        start = int(rng.integers(0, len(trace) - 1440))
        demand = trace[start:start + 1440] * factor * float(rng.uniform(0.3, 2.0))
        demand[rng.integers(0, len(demand), 20)] *= 3.0  # spikes into overload
        bad, cost = replay_totals(demand, candidates)
        for cand, b, c in zip(candidates, bad, cost):
            out = AutoscaledService().run(demand, cand)
            assert b == int(np.sum(~out["good"])), cand
            assert c == pytest.approx(float(np.sum(out["cost_usd"])), rel=1e-12), cand
