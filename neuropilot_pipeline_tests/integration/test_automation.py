"""Schedules pick the partition that just closed, training and the report only once their day is
complete; the sensor fires on critical anomalies only."""

import datetime as dt

import dagster as dg
import pandas as pd

from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.test_utils import create_run_for_test

from neuropilot_pipeline.automation import (
    critical_anomaly_sensor, day_wait_reason, ops_cycle_schedule, report_schedule, training_schedule,
)
from neuropilot_pipeline.definitions import defs


def at(text):
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


def test_schedules_target_the_closed_window_or_day_with_idempotent_run_keys():
    req = ops_cycle_schedule(dg.build_schedule_context(scheduled_execution_time=at("2026-11-03 12:05")))
    assert req.partition_key == "2026-11-03-06:00" and req.run_key == "2026-11-03-06:00"
    req = ops_cycle_schedule(dg.build_schedule_context(scheduled_execution_time=at("2026-11-03 00:05")))
    assert req.partition_key == "2026-11-02-18:00"
    with dg.instance_for_test() as instance:
        collect(instance, "2026-11-02")
        req = evaluate(training_schedule, instance, "2026-11-03 03:00")
        assert (req.partition_key, req.run_key) == ("2026-11-02", "2026-11-02")
        req = evaluate(report_schedule, instance, "2026-11-03 09:00")
        assert (req.partition_key, req.run_key) == ("2026-11-02", "2026-11-02")


def test_cron_times_are_the_products():
    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    # Training at 03:00 and the report at 09:00, each re-checked every 10 minutes while its day
    # is still being collected.
    assert schedules == {"ops_cycle_schedule": "5 */6 * * *", "training_schedule": "*/10 3-23 * * *",
                         "report_schedule": "*/10 9-23 * * *"}


DAY = "2026-11-02"
WINDOWS = [f"{DAY}-{h:02d}:00" for h in (0, 6, 12, 18)]


def collect(instance, day, hours=(0, 6, 12, 18)):
    for h in hours:
        instance.report_runless_asset_event(dg.AssetMaterialization("metric_features", partition=f"{day}-{h:02d}:00"))


def evaluate(schedule, instance, when):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at(when),
                                        repository_def=defs.get_repository_def())
    return schedule(context)


def test_day_wait_reason_waits_for_runs_on_their_way_and_for_missing_windows_only_while_they_may_come():
    assert day_wait_reason(DAY, WINDOWS, set(WINDOWS), set(), True) is None
    busy = day_wait_reason(DAY, WINDOWS, set(WINDOWS), {WINDOWS[3], "2026-11-09-00:00"}, False)
    assert busy.startswith(f"{DAY}: waiting for {WINDOWS[3]}, still queued or running")
    missing = day_wait_reason(DAY, WINDOWS, set(WINDOWS[:2]), set(), True)
    assert f"{WINDOWS[2]}, {WINDOWS[3]} are not collected yet" in missing
    assert day_wait_reason(DAY, WINDOWS, set(WINDOWS[:2]), set(), False) is None
    # The report also waits for the day's training, which is not a window to collect.
    assert "waiting for 2026-11-02," in day_wait_reason(DAY, [*WINDOWS, DAY], set(WINDOWS), {DAY}, False)
    assert day_wait_reason(DAY, [*WINDOWS, DAY], set(WINDOWS), set(), False) is None


def test_training_waits_while_a_window_of_its_day_is_running_then_launches_once():
    with dg.instance_for_test() as instance:
        collect(instance, DAY, hours=(0, 6, 12))
        late = create_run_for_test(instance, job_name="ops_cycle", status=dg.DagsterRunStatus.STARTED,
                                   tags={"dagster/partition": WINDOWS[3]})
        # Still running at 08:00, long after a missing window would be given up on: it is on its way.
        for when in ("2026-11-03 03:00", "2026-11-03 08:00"):
            skip = evaluate(training_schedule, instance, when)
            assert isinstance(skip, dg.SkipReason) and f"waiting for {WINDOWS[3]}" in skip.skip_message, skip
        instance.report_run_failed(late)  # the run ends (here: failed) without collecting the window
        req = evaluate(training_schedule, instance, "2026-11-03 08:10")
        assert isinstance(req, dg.RunRequest) and req.partition_key == DAY
        create_run_for_test(instance, job_name="train_model", status=dg.DagsterRunStatus.SUCCESS,
                            tags={"dagster/partition": DAY, "dagster/schedule_name": "training_schedule"})
        skip = evaluate(training_schedule, instance, "2026-11-03 08:20")
        assert isinstance(skip, dg.SkipReason) and "already launched" in skip.skip_message


def test_training_waits_while_a_backfill_run_over_a_range_of_windows_is_running():
    # A backfill from the UI gives the ops cycle's assets their whole range in one run: no
    # dagster/partition tag, a range instead. Every window of the range is on its way.
    with dg.instance_for_test() as instance:
        collect(instance, DAY, hours=(0, 6, 12))
        ranged = create_run_for_test(instance, job_name="ops_cycle", status=dg.DagsterRunStatus.STARTED, tags={
            "dagster/asset_partition_range_start": "2026-11-01-12:00",
            "dagster/asset_partition_range_end": WINDOWS[1]})
        skip = evaluate(training_schedule, instance, "2026-11-03 08:00")
        assert isinstance(skip, dg.SkipReason) and f"waiting for {WINDOWS[0]}, {WINDOWS[1]}, still" in skip.skip_message, skip
        assert "2026-11-01" not in skip.skip_message  # the day before is not this day's business
        instance.report_run_failed(ranged)
        assert isinstance(evaluate(training_schedule, instance, "2026-11-03 08:10"), dg.RunRequest)


def test_a_missing_window_is_waited_for_until_06_then_training_goes_on_without_it():
    # E.g. a daemon restarted after 03:00 evaluates the training tick before it has caught up the
    # 00:05 ops cycle: that window has no run yet, but one is coming.
    with dg.instance_for_test() as instance:
        collect(instance, DAY, hours=(0, 6, 12))
        for when in ("2026-11-03 03:00", "2026-11-03 05:50"):
            skip = evaluate(training_schedule, instance, when)
            assert isinstance(skip, dg.SkipReason) and f"{WINDOWS[3]} are not collected yet" in skip.skip_message
        assert isinstance(evaluate(training_schedule, instance, "2026-11-03 06:00"), dg.RunRequest)
        # The report states missing windows; it does not wait for them.
        assert isinstance(evaluate(report_schedule, instance, "2026-11-03 09:00"), dg.RunRequest)


def test_the_report_waits_for_the_days_training():
    with dg.instance_for_test() as instance:
        collect(instance, DAY)
        create_run_for_test(instance, job_name="train_model", status=dg.DagsterRunStatus.STARTED,
                            tags={"dagster/partition": DAY})
        skip = evaluate(report_schedule, instance, "2026-11-03 09:00")
        assert isinstance(skip, dg.SkipReason) and f"waiting for {DAY}, still queued" in skip.skip_message


def test_training_waits_for_the_windows_an_asset_backfill_has_not_launched_yet():
    # An asset backfill from the UI launches a window only when the window before it is done, so
    # the day's last windows have no run yet while it works through the first ones.
    repo = defs.get_repository_def()
    with dg.instance_for_test() as instance:
        collect(instance, DAY)  # an earlier version of each window: the backfill recomputes them
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="recompute", asset_graph=repo.asset_graph, partition_names=WINDOWS,
            asset_selection=[dg.AssetKey("metric_features")], backfill_timestamp=dt.datetime.now().timestamp(),
            tags={}, dynamic_partitions_store=instance, all_partitions=False, title=None, description=None,
            run_config=None)
        instance.add_backfill(backfill)
        skip = evaluate(training_schedule, instance, "2026-11-03 03:00")
        assert isinstance(skip, dg.SkipReason) and f"waiting for {', '.join(WINDOWS)}" in skip.skip_message, skip
        instance.update_backfill(backfill.with_status(backfill.status.COMPLETED_SUCCESS))
        assert isinstance(evaluate(training_schedule, instance, "2026-11-03 03:10"), dg.RunRequest)


def _evaluate(instance):
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    return critical_anomaly_sensor.evaluate_tick(context)


def test_critical_sensor_launches_an_alert_for_critical_windows_only():
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "anomalies", partition="2026-11-02-06:00", metadata={"critical_count": 0}))
        result = _evaluate(instance)
        assert not result.run_requests
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "anomalies", partition="2026-11-02-12:00", metadata={"critical_count": 3}))
        result = _evaluate(instance)
        assert [r.partition_key for r in result.run_requests] == ["2026-11-02-12:00"]
        assert result.run_requests[0].tags["neuropilot/critical_count"] == "3"


def test_several_critical_windows_between_two_ticks_each_get_their_alert():
    # A backfill scores many windows between two sensor ticks: none may be dropped.
    with dg.instance_for_test() as instance:
        for window, count in (("2026-11-02-00:00", 2), ("2026-11-02-06:00", 0), ("2026-11-02-12:00", 1)):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                "anomalies", partition=window, metadata={"critical_count": count}))
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        result = critical_anomaly_sensor.evaluate_tick(context)
        assert [r.partition_key for r in result.run_requests] == ["2026-11-02-00:00", "2026-11-02-12:00"]
        # The cursor moves past them: the next tick asks for nothing again.
        again = critical_anomaly_sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor))
        assert not again.run_requests


def test_training_waits_for_the_windows_a_job_backfill_has_not_submitted_yet():
    # A backfill of the ops_cycle job (the backfill dialog of the job's partitions) submits its
    # runs in chunks: partitions not submitted yet have no run to see.
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin, RemotePartitionSetOrigin, RemoteRepositoryOrigin,
    )

    origin = RemotePartitionSetOrigin(
        repository_origin=RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("neuropilot"), "__repository__"),
        partition_set_name="ops_cycle_partition_set")
    with dg.instance_for_test() as instance:
        collect(instance, DAY)
        backfill = PartitionBackfill(backfill_id="ops", status=BulkActionStatus.REQUESTED, from_failure=False,
                                     tags={}, backfill_timestamp=dt.datetime.now().timestamp(),
                                     partition_set_origin=origin, partition_names=WINDOWS)
        instance.add_backfill(backfill)
        for window in WINDOWS[:3]:  # submitted and done
            create_run_for_test(instance, job_name="ops_cycle", status=dg.DagsterRunStatus.SUCCESS,
                                tags={"dagster/partition": window, "dagster/backfill": "ops"})
        skip = evaluate(training_schedule, instance, "2026-11-03 03:00")
        assert isinstance(skip, dg.SkipReason) and f"{DAY}: waiting for {WINDOWS[3]}," in skip.skip_message, skip
        create_run_for_test(instance, job_name="ops_cycle", status=dg.DagsterRunStatus.SUCCESS,
                            tags={"dagster/partition": WINDOWS[3], "dagster/backfill": "ops"})
        assert isinstance(evaluate(training_schedule, instance, "2026-11-03 03:10"), dg.RunRequest)
