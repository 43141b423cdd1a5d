"""Windows out of order: a window whose predecessor was collected but has not finished must not
start its chain cold (detectors re-learning, the policy forgetting) — it fails, and succeeds,
with the same result as in order, once the predecessor is done."""

import dagster as dg
import pandas as pd
import pytest

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.storage.warehouse import Warehouse

W1, W2, W3 = "2026-11-01-00:00", "2026-11-01-06:00", "2026-11-01-12:00"
UP_TO_REWARD = ["raw_metrics", "metric_features", "anomalies", "forecast_alerts", "reward"]


def _home(tmp_path, name, monkeypatch):
    home = tmp_path / name
    config = prepare_demo_home(home, fresh=True)
    monkeypatch.setenv("NEUROPILOT_HOME", str(home))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    return home


def _run(key, assets=None):
    from neuropilot_pipeline.definitions import defs

    job = defs.resolve_job_def("ops_cycle")
    return job.execute_in_process(partition_key=key, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                  asset_selection=[dg.AssetKey(a) for a in assets] if assets else None)


def _failure(result) -> str:
    failures = [e.step_failure_data for e in result.all_events if e.is_step_failure]
    return " ".join(f.user_failure_data.description if f.user_failure_data else f.error.message for f in failures)


def test_a_window_waits_for_its_unfinished_predecessor_then_matches_the_in_order_run(tmp_path, monkeypatch):
    _home(tmp_path, "in_order", monkeypatch)
    for key in (W1, W2, W3):
        assert _run(key).success
    in_order = Warehouse(tmp_path / "in_order" / "warehouse").read_partition("threshold_decisions", W3)

    home = _home(tmp_path, "out_of_order", monkeypatch)
    assert _run(W1).success
    assert _run(W2, ["raw_metrics"]).success  # W2 collected, then (say) still running
    early = _run(W3)
    assert not early.success
    assert f"previous window {W2} has raw_metrics for web but no detector state" in _failure(early)

    assert _run(W2, UP_TO_REWARD).success  # W2 detected, but its decision not made yet
    early = _run(W3)
    assert not early.success and "no policy state" in _failure(early)

    assert _run(W2).success
    assert _run(W3).success
    late = Warehouse(home / "warehouse").read_partition("threshold_decisions", W3)
    pd.testing.assert_frame_equal(late.drop(columns=["thresholds_origin"]),
                                  in_order.drop(columns=["thresholds_origin"]), check_like=True)


def test_the_first_window_and_a_window_after_a_gap_start_cold(tmp_path, monkeypatch):
    _home(tmp_path, "gap", monkeypatch)
    assert _run(W1).success
    result = _run(W3)  # W2 was never collected (the daemon was down): nothing to wait for
    assert result.success
    mat = result.asset_materializations_for_node("anomalies")[-1]
    assert "cold start" in str(mat.metadata["detector_state"].value)
