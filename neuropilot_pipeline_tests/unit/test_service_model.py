"""The reference service model on cases small enough to work out by hand, and the compiled
minute loop held equal to the spec's plain Python loop on real demand."""

import json
import math

import numpy as np
import pytest

from neuropilot_pipeline.core.service_model import (
    FIXED_BASELINE, AutoscaledService, ServiceParams, Thresholds, erlang_c, oracle_instances, p95_seconds,
    scale_factor_for_peak, tail_probability,
)

ONE_SLOT = ServiceParams(slots_per_instance=1)  # mu = 20 req/s per server, 1,200 per minute
CALM = Thresholds(80, 30, 250, 1, 10)


class PythonLoopService(AutoscaledService):
    """The oracle: the spec's minute loop in plain Python, as `AutoscaledService.run` was before
    its loop was compiled (`_run_kernel`). Same state, same outputs; only the tests use it."""

    def run(self, requests_per_min, thresholds):
        p = self.params
        req = np.asarray(requests_per_min, dtype=float)
        n = len(req)
        out = {k: np.zeros(n) for k in ("requests", "lambda_per_s", "ready", "booting", "utilisation_pct", "p95_ms",
                                        "backlog", "cost_usd", "desired")}
        out["good"] = np.zeros(n, dtype=bool)
        if n and self.ready is None:
            self.ready = oracle_instances(req[0] / 60.0, p)
        mu, k = p.mu, p.slots_per_instance
        up, down = thresholds.cpu_scale_up_threshold, thresholds.cpu_scale_down_threshold
        for i in range(n):
            t = self.minute
            # Instances whose provisioning finished by now serve this minute.
            while self.booting and self.booting[0] <= t:
                self.booting.pop(0)
                self.ready += 1
            started_with_backlog = self.backlog > 0
            lam = (req[i] + self.backlog) / 60.0
            servers = self.ready * k
            capacity = servers * mu
            if lam >= capacity:
                p95 = math.inf
                self.backlog = (lam - capacity) * 60.0
            else:
                p95 = p95_seconds(lam, servers, p) * 1000.0
                self.backlog = 0.0
            good = (not started_with_backlog) and p95 <= p.slo_p95_ms
            u = min(1.0, lam / capacity) * 100.0 if capacity > 0 else 100.0
            provisioned = self.ready + len(self.booting)
            # Autoscaler, end of minute.
            if u > up or p95 > thresholds.latency_threshold_ms:
                desired = max(provisioned + 1, math.ceil(self.ready * u / up))
            elif u < down:
                desired = math.ceil(self.ready * u / up)
            else:
                desired = provisioned
            desired = min(max(desired, thresholds.min_instances), thresholds.max_instances)
            self.desired_history.append(desired)
            self.desired_history = self.desired_history[-p.scale_in_window_min:]
            if desired < provisioned:
                desired = max(self.desired_history)
            out["requests"][i] = req[i]
            out["lambda_per_s"][i] = lam
            out["ready"][i] = self.ready
            out["booting"][i] = len(self.booting)
            out["utilisation_pct"][i] = u
            out["p95_ms"][i] = p95
            out["good"][i] = good
            out["backlog"][i] = self.backlog
            out["cost_usd"][i] = provisioned * p.price_per_instance_hour / 60.0
            out["desired"][i] = desired
            if desired > provisioned:
                self.booting.extend([t + 1 + p.provision_delay_min] * (desired - provisioned))
            elif desired < provisioned:
                surplus = provisioned - desired
                cancel = min(surplus, len(self.booting))
                if cancel:
                    del self.booting[len(self.booting) - cancel:]  # newest first
                self.ready -= surplus - cancel
            self.minute += 1
        return out


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
    # The learning policy decides from replay_totals; it must be the spec's minute loop (the
    # Python oracle here, which `run` is held equal to below) exactly, including
    # minutes whose p95 lies within a microsecond of the SLO or latency threshold, overloads
    # with backlog, scale-in holds and booting cancellations.
    from neuropilot_pipeline.core.service_model import replay_totals, replay_with_near_misses
    from neuropilot_pipeline.core.telemetry import load_demand_trace

    trace = load_demand_trace()
    factor = scale_factor_for_peak(trace, 40)
    rng = np.random.default_rng(7)
    candidates = [Thresholds(up, down, lat, lo, hi) for up, down, lat, lo, hi in
                  [(80, 30, 250, 2, 200), (90, 70, 250, 1, 30), (60, 20, 120, 3, 200), (85, 40, 400, 1, 12),
                   (70, 60, 250.0001, 2, 50), (95, 10, 1000, 20, 500)]]
    reached = []
    for _ in range(4):
        start = int(rng.integers(0, len(trace) - 1440))
        demand = trace[start:start + 1440] * factor * float(rng.uniform(0.3, 2.0))
        demand[rng.integers(0, len(demand), 20)] *= 3.0  # spikes into overload
        bad, cost = replay_totals(demand, candidates)
        bad_n, cost_n, near_p95 = replay_with_near_misses(demand, candidates, ServiceParams(), near_miss_ms=200.0)
        np.testing.assert_array_equal(bad_n, bad)
        np.testing.assert_array_equal(cost_n, cost)
        _, _, near_busy = replay_with_near_misses(demand, candidates, ServiceParams(), near_miss_utilisation_pct=92.0)
        _, _, near_both = replay_with_near_misses(demand, candidates, ServiceParams(), 200.0, 92.0)
        for i, cand in enumerate(candidates):
            out = PythonLoopService().run(demand, cand)
            assert bad[i] == int(np.sum(~out["good"])), cand
            assert cost[i] == pytest.approx(float(np.sum(out["cost_usd"])), rel=1e-12), cand
            # Near misses: every bad minute, and every good one with p95 over 200 ms (or the ready
            # instances over 92 % busy) once the first scale-out could serve (minute 1 + delay on).
            after_first_scale_out = np.arange(len(demand)) > ServiceParams().provision_delay_min
            slow, busy = out["p95_ms"] > 200.0, out["utilisation_pct"] > 92.0
            assert near_p95[i] == int(np.sum(~out["good"] | slow & after_first_scale_out)), cand
            assert near_busy[i] == int(np.sum(~out["good"] | busy & after_first_scale_out)), cand
            assert near_both[i] == int(np.sum(~out["good"] | (slow | busy) & after_first_scale_out)), cand
        reached.append(((near_p95 > bad).any(), (near_busy > bad).any(), (near_both > near_p95).any()))
    # The samples reach both bands, and minutes busy but not slow, so each count is tested.
    assert np.any(reached, axis=0).all(), reached


def assert_same_minutes(compiled, oracle, label):
    assert list(compiled) == list(oracle), label
    for key in oracle:
        assert compiled[key].dtype == oracle[key].dtype, (label, key)
        np.testing.assert_array_equal(compiled[key], oracle[key], err_msg=f"{label}: {key}")
        assert compiled[key].tobytes() == oracle[key].tobytes(), f"{label}: {key} differs in its bits"


def assert_same_state(compiled, oracle, label):
    assert compiled.state == oracle.state, label
    # The state is persisted as JSON between windows: the same bytes, so old state keeps working.
    assert json.dumps(compiled.state) == json.dumps(oracle.state), label


@pytest.mark.parametrize("params", [ServiceParams(), ServiceParams(provision_delay_min=6, scale_in_window_min=2),
                                    ServiceParams(slots_per_instance=1, scale_in_window_min=1)],
                         ids=["default", "slow-boot", "one-slot"])
def test_compiled_minute_loop_is_the_python_loop_on_real_demand(params):
    # Three days of the bundled WorldCup98 trace at the spec's scale (with a few spikes into
    # overload and idle minutes), through thresholds from calm to saturating (max_instances far
    # below the peak's 40, so backlog carries over), from a fresh state and window by window
    # with the state carried as JSON and the thresholds changing; the last 6 hours in 2-minute
    # calls whose min_instances steps around the running count, so that instances started in
    # different minutes are booting together when a lower floor lets some go (newest first).
    # Every per-minute output and the state must be exactly the Python loop's.
    from neuropilot_pipeline.core.telemetry import load_demand_trace

    trace = load_demand_trace()
    demand = trace[2 * 1440:5 * 1440] * scale_factor_for_peak(trace, 40, params)
    demand[[100, 1500, 1501, 3000]] *= 4.0
    demand[[700, 2900, 2901]] = 0.0
    if params.slots_per_instance == 1:
        demand = demand / 4.0
    settings = [FIXED_BASELINE, Thresholds(90, 70, 250, 1, 30), Thresholds(60, 55, 120, 3, 200),
                Thresholds(85, 40, 400, 1, 12), Thresholds(70, 60, 250.0001, 2, 50), Thresholds(95, 10, 1000, 20, 500),
                Thresholds(50, 45, 100, 0, 200)]
    for th in settings:
        compiled, oracle = AutoscaledService(params), PythonLoopService(params)
        assert_same_minutes(compiled.run(demand, th), oracle.run(demand, th), f"fresh {th}")
        assert_same_state(compiled, oracle, f"fresh {th}")
    calls = [(lo, lo + 360, settings[w % len(settings)]) for w, lo in enumerate(range(0, len(demand) - 360, 360))]
    floors = [Thresholds(80, 30, 250, m, 200) for m in (0, 6, 12, 9, 24, 30, 18)]
    calls += [(lo, lo + 2, floors[k % len(floors)]) for k, lo in enumerate(range(len(demand) - 360, len(demand), 2))]
    compiled_state = oracle_state = None
    for lo, hi, th in calls:
        compiled, oracle = AutoscaledService(params, compiled_state), PythonLoopService(params, oracle_state)
        assert_same_minutes(compiled.run(demand[lo:hi], th), oracle.run(demand[lo:hi], th), f"minutes {lo}-{hi} {th}")
        assert_same_state(compiled, oracle, f"minutes {lo}-{hi} {th}")
        compiled_state, oracle_state = json.loads(json.dumps(compiled.state)), json.loads(json.dumps(oracle.state))


def test_compiled_minute_loop_resumes_any_persisted_state_like_the_python_loop():
    # States the autoscaler itself would not leave (booting out of order, a history longer
    # than the window, no instance at all, no minutes at all), a demand the service can not
    # read (NaN) and an overload by a fraction of a request are still resumed and run exactly
    # as the Python loop does.
    demand = np.array([2400.3, 600.0, 9000.0, 0.0, 60.0, np.nan, 24000.0, 600.0])
    states = [{"ready": 2, "booting": [9, 4, 4, 12], "backlog": 150.5, "desired_history": [7, 1, 1, 1, 1, 1, 1],
               "minute": 3},
              {"ready": 0, "booting": [], "backlog": 0.0, "desired_history": [], "minute": 0},
              {"ready": 2, "booting": [], "backlog": 0.0, "desired_history": [2], "minute": 50}]
    for state in states:
        for th in (CALM, Thresholds(80, 30, 250, 0, 3)):
            compiled, oracle = AutoscaledService(ONE_SLOT, dict(state)), PythonLoopService(ONE_SLOT, dict(state))
            assert_same_minutes(compiled.run(demand, th), oracle.run(demand, th), f"{state} {th}")
            assert_same_state(compiled, oracle, f"{state} {th}")
            assert_same_minutes(compiled.run(demand[:0], th), oracle.run(demand[:0], th), "no minutes")
            assert_same_state(compiled, oracle, "no minutes")
    fresh, oracle = AutoscaledService(), PythonLoopService()
    assert_same_minutes(fresh.run(np.zeros(0), CALM), oracle.run(np.zeros(0), CALM), "fresh, no minutes")
    assert fresh.state == oracle.state and fresh.state["ready"] is None
