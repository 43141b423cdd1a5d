import math

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from neuropilot_pipeline.core.policy import DEFAULT_BOUNDS, Observation, RulePolicy, apply_guardrails, make_policy
from neuropilot_pipeline.core.reward import RewardConfigError, window_reward
from neuropilot_pipeline.core.service_model import FIXED_BASELINE, Thresholds

wild = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9), st.none(),
                 st.text(max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({n: wild for n in Thresholds.names()}))
def test_no_proposal_however_wild_leaves_bounds_or_exceeds_the_step(proposal):
    new = apply_guardrails(FIXED_BASELINE, proposal)
    for name, b in DEFAULT_BOUNDS.items():
        value = getattr(new, name)
        assert math.isfinite(value) and b.min <= value <= b.max
        assert abs(value - getattr(FIXED_BASELINE, name)) <= b.max_step + 1e-9
    assert new.cpu_scale_down_threshold <= new.cpu_scale_up_threshold - 10
    assert new.min_instances <= new.max_instances


def minutes(p95=150.0, good=True, cost_per_min=0.01, n=360):
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({"ts": ts, "cpu_percent": 50.0, "p95_latency_ms": p95, "good": good,
                         "instance_count": 4.0, "cost_usd": cost_per_min, "request_rate_per_s": 100.0})


def observe(m, thresholds=FIXED_BASELINE, **counts):
    return Observation(pd.Timestamp("2026-11-01", tz="UTC"), m, thresholds, counts, sla_target=99.95,
                       monthly_budget=50.0, slo_p95_ms=250.0)


def test_rule_scales_more_when_the_sla_is_missed():
    m = minutes()
    m.loc[:5, "good"] = False  # 6 bad minutes of 360: 98.3 %
    d = RulePolicy().decide(None, observe(m))
    assert d.thresholds.cpu_scale_up_threshold == 75 and d.thresholds.cpu_scale_down_threshold == 25
    assert d.actions["cpu_scale_up_threshold"] == "decrease" and "SLA" in d.reason


def test_rule_scales_less_when_sla_met_and_cost_over_budget():
    d = RulePolicy().decide(None, observe(minutes(cost_per_min=0.01)))  # $432/month > $50
    assert d.thresholds.cpu_scale_up_threshold == 85 and d.actions["cpu_scale_down_threshold"] == "increase"


def test_rule_holds_when_latency_is_close_to_the_slo():
    d = RulePolicy().decide(None, observe(minutes(p95=230.0)))
    assert d.thresholds == FIXED_BASELINE and "hold" in d.reason


def test_latency_threshold_never_tightened_below_normal_latency():
    m = minutes(p95=180.0)
    m.loc[:5, "good"] = False
    t = Thresholds(80, 30, 230, 2, 200)
    d = RulePolicy().decide(None, observe(m, t, latency=5))
    assert d.thresholds.latency_threshold_ms == 225  # 1.25 x 180 = 225, not 230 - 25 = 205


def test_reward_by_the_seed_formula():
    # 6 hours costing $0.5 -> $60 a month: variance |60 - 50| / 50 = 0.2.
    r = window_reward(99.99, 99.95, 0.5, 50.0, 360)
    assert r.projected_monthly_cost == pytest.approx(60.0) and r.reward == pytest.approx(0.8)
    assert window_reward(99.9, 99.95, 0.5, 50.0, 360).reward == pytest.approx(-0.2)
    with pytest.raises(RewardConfigError, match="sum to 1"):
        window_reward(99.99, 99.95, 0.5, 50.0, 360, weights={"sla": 0.5, "cost": 0.4})


def test_same_state_and_inputs_give_the_same_decision():
    m = minutes()
    a = make_policy("rule").decide({"x": 1}, observe(m))
    b = make_policy("rule").decide({"x": 1}, observe(m))
    assert a.thresholds == b.thresholds and a.reason == b.reason and a.new_state == b.new_state


def test_weighted_reward_mixes_objectives_in_zero_one():
    r = window_reward(99.99, 99.95, 0.5, 50.0, 360, weights={"sla": 0.5, "cost": 0.3, "latency": 0.1,
                                                               "availability": 0.1},
                      latency_p95_ms=300.0, slo_p95_ms=250.0, availability_pct=99.0)
    # sla 1, cost 1 - 0.2, latency 1 - 50/250, availability 0.99
    assert r.reward == pytest.approx(0.5 * 1 + 0.3 * 0.8 + 0.1 * 0.8 + 0.1 * 0.99)
