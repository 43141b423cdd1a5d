"""Parsing what Prometheus returns: NaN/Inf strings, several series per service, gaps."""

import math

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from neuropilot_pipeline.core.prometheus import SourceError, split_range, to_frame

START = pd.Timestamp("2026-11-01", tz="UTC")
END = START + pd.Timedelta(minutes=3)
T0 = START.timestamp()


def series(service, values, **labels):
    return {"metric": {"service": service, **labels}, "values": [[T0 + 60 * i, v] for i, v in values]}


def test_rates_sum_over_instances_and_gauges_average_and_specials_parse():
    data = {
        "request_rate_per_s": [series("web", [(0, "1"), (1, "2")], instance="a"),
                               series("web", [(0, "3"), (2, "NaN")], instance="b")],
        "cpu_percent": [series("web", [(0, "10"), (1, "+Inf")], instance="a"),
                        series("web", [(0, "30")], instance="b")],
    }
    frame = to_frame(data, START, END, None, {"request_rate_per_s": "q1", "cpu_percent": "q2"})
    assert list(frame["request_rate_per_s"][:2]) == [4.0, 2.0] and math.isnan(frame["request_rate_per_s"][2])
    assert frame["cpu_percent"][0] == 20.0 and math.isinf(frame["cpu_percent"][1])
    assert len(frame) == 3


def test_empty_result_names_metric_and_query():
    with pytest.raises(SourceError, match="No metrics returned for cpu_percent: query 'up == 2'"):
        to_frame({"cpu_percent": []}, START, END, None, {"cpu_percent": "up == 2"})


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60 * 24 * 30))
def test_split_never_exceeds_the_points_limit_and_covers_every_minute(minutes):
    end = START + pd.Timedelta(minutes=minutes)
    chunks = split_range(START, end)
    points = [int((hi - lo).total_seconds() // 60) + 1 for lo, hi in chunks]
    assert all(p <= 11_000 for p in points) and sum(points) == minutes
    assert chunks[0][0] == START and chunks[-1][1] == end - pd.Timedelta(minutes=1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 10), st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                                                          st.sampled_from(["NaN", "+Inf", "-Inf", "x", ""]))),
                max_size=20))
def test_fuzzed_sample_values_never_crash_the_parser(samples):
    frame = to_frame({"cpu_percent": [series("web", samples)]}, START, END, None, {"cpu_percent": "q"})
    assert len(frame) == 3 and frame["cpu_percent"].dtype == float
