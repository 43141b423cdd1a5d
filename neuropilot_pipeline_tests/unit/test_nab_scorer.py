"""The NAB standard-profile scorer on cases worked out by hand."""

import math

import pandas as pd
import pytest

from neuropilot_pipeline.core.nab import normalised, probation_length, scaled_sigmoid, score_file

TS = pd.date_range("2014-01-01", periods=100, freq="5min")
WINDOW = [(TS[50], TS[59])]  # width 10


def detections(*idx):
    d = [False] * 100
    for i in idx:
        d[i] = True
    return d


def test_sigmoid_anchor_values_from_nab():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_is_fifteen_percent_capped_at_750():
    assert probation_length(100) == 15 and probation_length(10_000) == 750


def test_null_and_perfect_detectors_score_0_and_100():
    null = score_file(TS, detections(), WINDOW)
    assert null.raw == -1.0 and null.detected == 0
    perfect = score_file(TS, detections(50), WINDOW)
    assert perfect.raw == pytest.approx(1.0) and perfect.perfect == pytest.approx(1.0)
    assert normalised([null])["score"] == 0.0
    assert normalised([perfect])["score"] == pytest.approx(100.0)


def test_late_detection_earns_less_and_only_the_best_in_a_window_counts():
    # Index 55: position -(59 - 55 + 1) / 10 = -0.5 -> 0.84828 / 0.98661.
    late = score_file(TS, detections(55, 57), WINDOW)
    assert late.raw == pytest.approx(0.84828 / 0.98661, abs=1e-4) and late.false_positives == 0


def test_false_positives_cost_by_distance_after_the_window():
    # Before any window: -0.11 each. Index 64, 5 rows after the window's right edge (59):
    # position 5 / (10 - 1) -> 0.11 * S(0.5556).
    before = score_file(TS, detections(20), WINDOW)
    assert before.raw == pytest.approx(-1.0 - 0.11) and before.false_positives == 1
    after = score_file(TS, detections(64), WINDOW)
    expected = -1.0 + 0.11 * (2 / (1 + math.exp(5 * 5 / 9)) - 1)
    assert after.raw == pytest.approx(expected)


def test_detections_in_probation_do_not_count():
    assert score_file(TS, detections(3), WINDOW).raw == -1.0
