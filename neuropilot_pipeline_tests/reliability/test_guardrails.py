"""No input, however malformed (telemetry, carried policy state), drives a threshold outside
its bounds or moves it more than one step; bad state is refused by name, never trusted."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuropilot_pipeline.core.policy import DEFAULT_BOUNDS, Observation, PolicyStateError, make_policy
from neuropilot_pipeline.core.service_model import Thresholds

bad_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e12, 1e12),
                       st.sampled_from([0.0, -1.0, 1e308, -1e308]))
column = st.lists(bad_number, min_size=1, max_size=90)
state_value = st.one_of(st.none(), st.text(max_size=4), bad_number, st.lists(bad_number, max_size=5),
                        st.dictionaries(st.text(max_size=3), bad_number, max_size=2))
thresholds = st.builds(Thresholds,
                       st.floats(DEFAULT_BOUNDS["cpu_scale_up_threshold"].min, DEFAULT_BOUNDS["cpu_scale_up_threshold"].max),
                       st.floats(DEFAULT_BOUNDS["cpu_scale_down_threshold"].min, 40),
                       st.floats(DEFAULT_BOUNDS["latency_threshold_ms"].min, DEFAULT_BOUNDS["latency_threshold_ms"].max),
                       st.integers(int(DEFAULT_BOUNDS["min_instances"].min), 5),
                       st.integers(10, int(DEFAULT_BOUNDS["max_instances"].max)))


def frame(values, n):
    ts = pd.date_range("2026-11-01", periods=n, freq="1min", tz="UTC")
    pick = lambda i: np.resize(np.array(values[i % len(values)], dtype=float), n)  # noqa: E731
    return pd.DataFrame({"ts": ts, "cpu_percent": pick(0), "p95_latency_ms": pick(1), "good": pick(2) > 0,
                         "instance_count": pick(3), "cost_usd": pick(4), "request_rate_per_s": pick(5)})


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the inputs are absurd on purpose
@settings(max_examples=120, deadline=None)
@given(st.sampled_from(["learned", "rule"]), st.lists(column, min_size=6, max_size=6), st.integers(1, 90), thresholds,
       st.one_of(st.none(), st.dictionaries(st.sampled_from(["demand", "decisions", "minutes_seen", "risk", "avg_reward",
                                                             "last_target", "error_budget", "fleet"]), state_value,
                                                 max_size=4)))
def test_malformed_telemetry_and_state_never_break_the_bounds(policy_name, columns, n, current, state):
    policy = make_policy(policy_name)
    obs = Observation(pd.Timestamp("2026-11-01", tz="UTC"), frame(columns, n), current, {}, 99.95, 50.0, 250.0)
    try:
        decision = policy.decide(state, obs)
    except PolicyStateError as exc:
        assert "policy state" in str(exc) and "re-materialize" in str(exc)
        return
    new = decision.thresholds
    for name, b in DEFAULT_BOUNDS.items():
        value, old = getattr(new, name), getattr(current, name)
        assert math.isfinite(value) and b.min <= value <= b.max, (name, value)
        assert abs(value - old) <= b.max_step + 1e-9, (name, old, value)
    assert math.isfinite(decision.reward)
