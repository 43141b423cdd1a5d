"""Schedules pick the partition that just closed; the sensor fires on critical anomalies only."""

import datetime as dt

import dagster as dg
import pandas as pd

from neuropilot_pipeline.automation import (
    critical_anomaly_sensor, ops_cycle_schedule, report_schedule, training_schedule,
)
from neuropilot_pipeline.definitions import defs


def at(text):
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


def test_schedules_target_the_closed_window_or_day_with_idempotent_run_keys():
    req = ops_cycle_schedule(dg.build_schedule_context(scheduled_execution_time=at("2026-11-03 12:05")))
    assert req.partition_key == "2026-11-03-06:00" and req.run_key == "2026-11-03-06:00"
    req = ops_cycle_schedule(dg.build_schedule_context(scheduled_execution_time=at("2026-11-03 00:05")))
    assert req.partition_key == "2026-11-02-18:00"
    assert training_schedule(dg.build_schedule_context(scheduled_execution_time=at("2026-11-03 03:00"))).partition_key == "2026-11-02"
    assert report_schedule(dg.build_schedule_context(scheduled_execution_time=at("2026-11-03 09:00"))).partition_key == "2026-11-02"


def test_cron_times_are_the_products():
    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    assert schedules == {"ops_cycle_schedule": "5 */6 * * *", "training_schedule": "0 3 * * *",
                         "report_schedule": "0 9 * * *"}


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
