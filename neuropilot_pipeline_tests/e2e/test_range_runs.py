"""A run over a range of partitions (what a backfill launched from the UI starts, one per asset)
gives exactly what one run per partition gives, and records each partition on its own.

Four assets carry state from their previous partition, and a decision starts from what the
previous window's apply left in force, so a range must be walked window by window, decide then
apply. Two homes get the same two days: one a run per window and per day, as the schedules
launch them; the other one run per job and day, the windows of the day as a range.

The telemetry is history, as a backfill reads it from Prometheus: what the service did under
its initial thresholds. (The demo's simulated source runs the service under the tfvars of the
moment, a closed loop that only runs forward: a backfill of it is a different experiment.)
"""

import dataclasses
import json
import shutil
import subprocess
from collections import Counter

import dagster as dg
import pandas as pd
import pytest

from neuropilot_pipeline.assets.apply import decide_and_apply
from neuropilot_pipeline.assets.decide import policy_backtest, reward
from neuropilot_pipeline.assets.detect import anomalies, forecast_alerts
from neuropilot_pipeline.assets.features import metric_features
from neuropilot_pipeline.assets.ingest import raw_metrics
from neuropilot_pipeline.assets.model import anomaly_model
from neuropilot_pipeline.assets.partitions import windows_of_day
from neuropilot_pipeline.assets.report import daily_report
from neuropilot_pipeline.automation import RANGE_END_TAG, RANGE_START_TAG
from neuropilot_pipeline.lineage import explain
from neuropilot_pipeline.resources.neuropilot import NeuroPilotResource
from neuropilot_pipeline.resources.sources import MetricsSourceResource
from neuropilot_pipeline.storage.warehouse import Warehouse
from neuropilot_pipeline_tests.dagster_results import materializations
from neuropilot_pipeline_tests.e2e.homes import apply_mode_home

SERVICES = ["web", "api", "db"]
DAYS = ["2026-11-01", "2026-11-02"]
CYCLE = [raw_metrics, metric_features, anomalies, forecast_alerts, reward, decide_and_apply]
TABLES = {  # what each table holds that depends on when it was computed, not on what
    "raw_metrics": [], "metric_features": [], "anomalies": [], "forecast_alerts": [], "reward": [],
    "threshold_decisions": [], "applied_changes": ["commit"], "policy_backtest": [],
}


class RecordedHistory(MetricsSourceResource):
    """The simulated service under the thresholds it started with, whatever NeuroPilot decides."""

    def collect(self, cfg, state, start, end, partition_key, previous_partition_key, only=None):
        initial = cfg.infra_repo.parent / "infra-at-start"
        frozen = dataclasses.replace(cfg, paths={**cfg.paths, "infra_repo": str(initial)})
        return super().collect(frozen, state, start, end, partition_key,
                               previous_partition_key, only)


def make_home(path):
    apply_mode_home(path, SERVICES)
    shutil.copytree(path / "infra", path / "infra-at-start")
    return path


def resources_of(home) -> dict:
    return {"neuropilot": NeuroPilotResource(config_path=str(home / "ops_config.yaml"), home=str(home)),
            "metrics_source": RecordedHistory()}


def materialize(home, assets, keys, instance):
    tags = {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]} if len(keys) > 1 else {}
    result = dg.materialize(assets, partition_key=keys[0] if len(keys) == 1 else None, instance=instance,
                            resources=resources_of(home), tags=tags, raise_on_error=False)
    assert result.success, [str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
    return result


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    one_by_one, ranged = make_home(root / "one_by_one"), make_home(root / "ranged")
    separate, together = dg.DagsterInstance.ephemeral(), dg.DagsterInstance.ephemeral()
    results = {}
    for day in DAYS:
        for window in windows_of_day(day):
            materialize(one_by_one, CYCLE, [window], separate)
        materialize(one_by_one, [anomaly_model], [day], separate)
        results[("cycle", day)] = materialize(ranged, CYCLE, windows_of_day(day), together)
        materialize(ranged, [anomaly_model], [day], together)
    for day in DAYS:
        materialize(one_by_one, [policy_backtest], [day], separate)
    results["backtest"] = materialize(ranged, [policy_backtest], DAYS, together)
    return {"one_by_one": one_by_one, "ranged": ranged, "results": results, "ranged_instance": together}


def table(home, name, drop):
    frame = Warehouse(home / "warehouse").query(f"SELECT * FROM {name}").drop(columns=drop)
    for column in frame.columns:  # file paths name the home
        if frame[column].map(lambda v: isinstance(v, str)).any():
            frame[column] = frame[column].map(lambda v: v.replace(str(home), "HOME") if isinstance(v, str) else v)
    return frame.sort_values([c for c in ("partition", "service", "metric", "ts") if c in frame]).reset_index(drop=True)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_a_range_run_writes_what_one_run_per_partition_writes(homes, name):
    pd.testing.assert_frame_equal(table(homes["ranged"], name, TABLES[name]),
                                  table(homes["one_by_one"], name, TABLES[name]))


def test_the_decisions_compared_were_applied_window_after_window(homes):
    applied = table(homes["one_by_one"], "applied_changes", [])
    # Without applied changes the comparison above could not see decide and apply out of order.
    assert applied["applied"].sum() >= 2 and applied[applied["applied"]]["partition"].nunique() >= 2
    for home in ("one_by_one", "ranged"):
        subjects = subprocess.run(["git", "-C", str(homes[home] / "infra"), "log", "--format=%s"],
                                  capture_output=True, text=True, check=True).stdout
        assert len(subjects.splitlines()) == applied["applied"].sum() + 1  # + the initial commit
    for service in SERVICES:
        files = [(homes[home] / "infra" / service / "terraform.tfvars").read_text() for home in ("one_by_one", "ranged")]
        assert files[0] == files[1], service


def test_each_window_of_a_range_run_has_its_own_materialization_and_metadata(homes):
    result = homes["results"][("cycle", DAYS[1])]
    windows = windows_of_day(DAYS[1])
    for asset in ("raw_metrics", "anomalies", "threshold_decision", "terraform_vars"):
        assert sorted(m.partition for m in materializations(result, asset)) == windows, asset
    decisions = {m.partition: m.metadata for m in materializations(result, "threshold_decision")}
    # The metadata is the window's own, not one set copied onto every window.
    assert [decisions[w]["raw_metrics_partition"].value for w in windows] == windows
    assert len({decisions[w]["decisions"].value.__repr__() for w in windows}) > 1
    assert all(decisions[w]["run_covered"].value.startswith(f"{windows[0]} .. {windows[-1]}") for w in windows)
    # The shape detector's week of buckets is rebuilt from raw_metrics once per run, then carried
    # (the tables above are equal to the one-run-per-window home's, which rebuilt it every window).
    detector_state = [m.metadata["detector_state"].value for m in
                      sorted(materializations(result, "anomalies"), key=lambda m: m.partition)]
    assert detector_state[0].endswith("shape buckets rebuilt from raw_metrics")
    assert all(s.endswith("shape buckets carried in this run") for s in detector_state[1:])


def test_a_range_run_checks_every_window_and_names_those_that_failed(homes):
    result = homes["results"][("cycle", DAYS[1])]
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert set(checks) == {"complete_minutes", "finite_values", "no_counter_resets", "stable_series"}
    for check in checks.values():
        assert check.metadata["partitions_checked"].value == 4
        assert check.passed == (check.metadata["failed_in"].value == [])


def test_a_range_backtest_carries_its_shadow_run_from_day_to_day(homes):
    mats = {m.partition: m.metadata for m in materializations(homes["results"]["backtest"], "policy_backtest")}
    assert sorted(mats) == DAYS
    assert mats[DAYS[1]]["days"].value == 2.0 and mats[DAYS[0]]["days"].value == 1.0


def test_explain_follows_a_window_of_a_range_run_to_its_own_inputs(homes):
    window = windows_of_day(DAYS[1])[2]
    chain = {link.asset: link for link in explain(homes["ranged_instance"], window, "api")}
    run_id = homes["results"][("cycle", DAYS[1])].run_id
    assert chain["threshold_decision"].run_id == chain["terraform_vars"].run_id == run_id
    assert chain["threshold_decision"].metadata["raw_metrics_partition"] == window
    assert set(chain["threshold_decision"].metadata["decisions"]) == {"api"}
    assert chain["anomaly_model"].partition == DAYS[0]  # the window is scored by the day before's model


def test_a_range_run_that_failed_part_way_and_ran_again_writes_what_an_uninterrupted_one_writes(
        homes, tmp_path, monkeypatch):
    import neuropilot_pipeline.assets.apply as apply_module

    home, instance = make_home(tmp_path / "interrupted"), dg.DagsterInstance.ephemeral()
    materialize(home, CYCLE, windows_of_day(DAYS[0]), instance)
    materialize(home, [anomaly_model], [DAYS[0]], instance)
    # The decisions of day 2 fail at its third window: the two before it were decided, applied
    # and committed, but the run failed, so none of its windows is recorded as materialized.
    broken = windows_of_day(DAYS[1])[2]
    decide = apply_module.decide_window

    def decide_or_fail(context, neuropilot, key):
        if key == broken:
            raise dg.Failure(f"injected failure at {key}", allow_retries=False)
        return decide(context, neuropilot, key)
    monkeypatch.setattr(apply_module, "decide_window", decide_or_fail)
    failed = dg.materialize(CYCLE, instance=instance, resources=resources_of(home), raise_on_error=False,
                            tags={RANGE_START_TAG: windows_of_day(DAYS[1])[0],
                                  RANGE_END_TAG: windows_of_day(DAYS[1])[-1]})
    assert not failed.success and not materializations(failed, "threshold_decision")
    monkeypatch.setattr(apply_module, "decide_window", decide)
    # What the user does: backfill the range again.
    materialize(home, CYCLE, windows_of_day(DAYS[1]), instance)
    for name in ("threshold_decisions", "applied_changes", "anomalies", "reward"):
        pd.testing.assert_frame_equal(table(home, name, TABLES[name]), table(homes["ranged"], name, TABLES[name]),
                                      obj=name)
    for service in SERVICES:
        assert (home / "infra" / service / "terraform.tfvars").read_text() == \
            (homes["ranged"] / "infra" / service / "terraform.tfvars").read_text(), service
    # The git history tells what happened: every commit of the uninterrupted run, plus the failed
    # run's commits for windows before the failure that the run again had to commit once more (a
    # re-applied decision commits only where the file differs: not when the next window left it as is).
    applied = table(home, "applied_changes", [])
    before = windows_of_day(DAYS[1])[:2]
    assert applied[applied["applied"] & applied["partition"].isin(before)].shape[0] > 0
    logs = [Counter(subprocess.run(
        ["git", "-C", str(h / "infra"), "log", "--format=%s%x09%(trailers:key=NeuroPilot-Partition,valueonly,separator=)"],
        capture_output=True, text=True, check=True).stdout.splitlines()) for h in (home, homes["ranged"])]
    assert not logs[1] - logs[0], "a commit of the uninterrupted run is missing"
    twice = logs[0] - logs[1]
    assert all(line.rsplit("\t", 1)[1].split("/")[0] in before for line in twice), twice


def report_files(home, day):
    """The day's report files, as a reader compares them: the JSON without its generation time,
    the HTML with that time and the home's path taken out, the charts' bytes."""
    files = {p.name: p.read_bytes() for p in (home / "reports").glob(f"daily_report_{day.replace('-', '')}*")}
    stem = f"daily_report_{day.replace('-', '')}"
    report = json.loads(files.pop(f"{stem}.json"))
    generated = report.pop("generated_at")
    files[f"{stem}.html"] = files[f"{stem}.html"].decode().replace(generated, "GENERATED").replace(str(home), "HOME")
    return {**files, f"{stem}.json": report}


@pytest.fixture
def reports_on_workers(monkeypatch):
    """Charts on two worker processes (three services are below the default threshold for
    workers), and the order in which the report's own work and its charts' collection ran."""
    import neuropilot_pipeline.assets.report as report_module

    monkeypatch.setattr(report_module, "MIN_CHARTED_FOR_WORKERS", 2)
    calls = []
    start, finish = report_module._start_daily_report, report_module._finish_daily_report

    def recorded_start(day, *args):
        calls.append(("start", day))
        return start(day, *args)

    def recorded_finish(cfg, report, *args):
        calls.append(("finish", report["date"]))
        return finish(cfg, report, *args)
    monkeypatch.setattr(report_module, "_start_daily_report", recorded_start)
    monkeypatch.setattr(report_module, "_finish_daily_report", recorded_finish)
    return calls


def test_a_range_report_computes_the_next_day_while_the_charts_are_drawn_and_writes_the_same(
        homes, reports_on_workers):
    for day in DAYS:
        materialize(homes["one_by_one"], [daily_report], [day], dg.DagsterInstance.ephemeral())
    reports_on_workers.clear()
    result = materialize(homes["ranged"], [daily_report], DAYS, homes["ranged_instance"])
    assert reports_on_workers == [("start", DAYS[0]), ("start", DAYS[1]), ("finish", DAYS[0]), ("finish", DAYS[1])]
    assert [m.partition for m in materializations(result, "daily_report")] == DAYS
    for day in DAYS:
        ranged, separate = report_files(homes["ranged"], day), report_files(homes["one_by_one"], day)
        assert sum(name.endswith(".png") for name in ranged) == 11 * len(SERVICES)
        assert ranged == separate, day


def test_a_range_report_that_fails_on_a_day_leaves_the_day_before_it_whole(homes, tmp_path, reports_on_workers):
    home = tmp_path / "home"
    shutil.copytree(homes["ranged"], home, symlinks=True)
    shutil.rmtree(home / "reports")
    for window in windows_of_day(DAYS[1]):  # day 2's telemetry is gone: its report must fail
        (home / "warehouse" / "raw_metrics" / (window.replace(":", "") + ".parquet")).unlink()
    failed = dg.materialize([daily_report], instance=dg.DagsterInstance.ephemeral(), resources=resources_of(home),
                            tags={RANGE_START_TAG: DAYS[0], RANGE_END_TAG: DAYS[1]}, raise_on_error=False)
    assert not failed.success
    assert any(f"No raw_metrics for {DAYS[1]}" in str(e.step_failure_data.error) for e in failed.all_events
               if e.is_step_failure)
    # Day 1's charts were still being drawn when day 2 failed: they and its page were finished.
    assert reports_on_workers == [("start", DAYS[0]), ("start", DAYS[1]), ("finish", DAYS[0])]
    assert report_files(home, DAYS[0]) == report_files(homes["one_by_one"], DAYS[0])


@pytest.mark.parametrize("alone", ["threshold_decision", "terraform_vars"])
def test_decision_and_apply_can_each_be_materialized_alone(tmp_path, alone):
    home, instance = make_home(tmp_path / "home"), dg.DagsterInstance.ephemeral()
    window = windows_of_day(DAYS[0])[0]
    materialize(home, CYCLE, [window], instance)
    result = dg.materialize(CYCLE, selection=[alone], partition_key=window, instance=instance,
                            resources=resources_of(home))
    # decide_and_apply runs only the selected one (can_subset): the other is not materialized.
    assert [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()] == [alone]
