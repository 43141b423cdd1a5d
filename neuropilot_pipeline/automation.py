"""Jobs, schedules and sensors: the ops cycle every 6 h, training at 03:00 UTC, the report at 09:00 UTC,
and sensors for what must not wait."""


import dagster as dg

import os

import pandas as pd

from .assets.partitions import (
    WINDOW_HOURS, WINDOW_KEY_FORMAT, daily_partitions, six_hourly_partitions, windows_of_day,
)

RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

ops_cycle_job = dg.define_asset_job(
    "ops_cycle",
    selection=dg.AssetSelection.assets("raw_metrics", "metric_features", "anomalies", "forecast_alerts", "reward",
                                       "threshold_decision", "terraform_vars"),
    description="Collect the window that just ended, detect, score the reward, decide and apply thresholds.",
)
training_job = dg.define_asset_job(
    "train_model", selection=dg.AssetSelection.assets("anomaly_model"),
    description="Retrain each service's anomaly model on the day that just ended (warm start).",
)
report_job = dg.define_asset_job(
    "report_job", selection=dg.AssetSelection.assets("policy_backtest", "daily_report", "report_delivery"),
    description="Replay the policy on the last two weeks, then build and deliver the daily report.",
)
delivery_job = dg.define_asset_job(
    "deliver_reports", selection=dg.AssetSelection.assets("report_delivery"),
    description="Deliver the reports Slack or Notion could not take earlier, oldest first.",
)
critical_alert_job = dg.define_asset_job(
    "critical_alert", selection=dg.AssetSelection.assets("critical_alerts"),
    description="Write (and deliver) an alert for the critical anomalies of one window.",
)

# Each schedule materializes the partition that has just closed, with the partition as run
# key so a daemon restart never launches the same window twice. The ops cycle waits 5
# minutes after the window ends so late samples have landed in the source.
def _closed_window(at) -> str:
    end = pd.Timestamp(at).tz_convert("UTC").floor(f"{WINDOW_HOURS}h")
    return (end - pd.Timedelta(hours=WINDOW_HOURS)).strftime(WINDOW_KEY_FORMAT)


def _closed_day(at) -> str:
    return (pd.Timestamp(at).tz_convert("UTC").floor("D") - pd.Timedelta(days=1)).strftime("%Y-%m-%d")


@dg.schedule(cron_schedule="5 */6 * * *", job=ops_cycle_job, execution_timezone="UTC",
             description="Every 6 hours: the ops cycle for the window that just closed.")
def ops_cycle_schedule(context: dg.ScheduleEvaluationContext):
    key = _closed_window(context.scheduled_execution_time)
    return dg.RunRequest(run_key=key, partition_key=key)


# Training and the report need the whole day that ended. A backfill or a late ops cycle may still
# be collecting it at 03:00 / 09:00, so their schedules re-check every 10 minutes and launch the
# day once (run key = day) when nothing more is on its way.
TRAINING_CRON = "*/10 3-23 * * *"
REPORT_CRON = "*/10 9-23 * * *"
RECHECK_MINUTES = 10
# A window never collected and with no run on its way is waited for until 06:00, so that the ops
# cycle a restarted daemon catches up (its 00:05 tick) comes first; then the model trains on the
# rest of the day and its samples say so. The report (from 09:00) states the gap instead.
TRAINING_WAITS_FOR_MISSING_WINDOWS_UNTIL_HOUR = 6
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def day_wait_reason(day: str, watched: list[str], collected: set[str], on_the_way: set[str],
                    missing_may_still_come: bool) -> str | None:
    """Why the day's training or report should not start yet, or None when it should.

    `watched` are the partitions it reads (the day's windows, and for the report the day's
    model); `collected` the windows with features; `on_the_way` the partitions a queued or
    running run, or a backfill not done yet, will still write."""
    busy = [k for k in watched if k in on_the_way]
    if busy:
        return f"{day}: waiting for {', '.join(busy)}, still queued or running; re-checked every {RECHECK_MINUTES} min."
    windows = set(windows_of_day(day))
    missing = [k for k in watched if k in windows and k not in collected]
    if missing and missing_may_still_come:
        return (f"{day}: windows {', '.join(missing)} are not collected yet and no run is on its way; "
                f"waiting for the ops cycle to catch up (re-checked every {RECHECK_MINUTES} min).")
    return None


def partitions_of_run(run: dg.DagsterRun) -> set[str]:
    """The partitions a run writes: its partition, or each one of its range (a backfill's runs
    cover ranges: the assets' BackfillPolicy)."""
    tags = run.tags or {}
    if tags.get("dagster/partition"):
        return {tags["dagster/partition"]}
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not (start and end):
        return set()
    partitions = daily_partitions if len(start) == len("YYYY-MM-DD") else six_hourly_partitions
    return set(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))


def run_partitions_label(run: dg.DagsterRun) -> str:
    """What a run covers, for people: `2026-11-03-06:00`, or `2026-11-03-00:00 .. 2026-11-04-18:00`."""
    tags = run.tags or {}
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    if tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG):
        return f"{tags[RANGE_START_TAG]} .. {tags[RANGE_END_TAG]}"
    return "-"


def partitions_on_the_way(instance: dg.DagsterInstance, asset_graph) -> set[str]:
    """Partition keys that a queued or running run, or a backfill still in progress, will write."""
    # Dagster has no public API for backfills' remaining partitions yet.
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    keys = {k for r in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT)) for k in partitions_of_run(r)}
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        if backfill.is_asset_backfill:
            # Asset backfills launch a partition's run only once its parents are done.
            data = backfill.get_asset_backfill_data(asset_graph)
            left = data.target_subset - data.materialized_subset - data.failed_and_downstream_subset
            keys |= {p.partition_key for p in left.iterate_asset_partitions()}
        else:
            submitted = {k for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
                         for k in partitions_of_run(r)}
            keys |= set(backfill.partition_names or []) - submitted
    keys.discard(None)
    return keys


def _launch_day_once(context: dg.ScheduleEvaluationContext, schedule: str, waits_for_training: bool,
                     missing_windows_until_hour: int):
    at = pd.Timestamp(context.scheduled_execution_time).tz_convert("UTC")
    day = _closed_day(at)
    launched = context.instance.get_runs(
        dg.RunsFilter(tags={"dagster/schedule_name": schedule, "dagster/partition": day}), limit=1)
    if launched:
        return dg.SkipReason(f"{day}: already launched (run {launched[0].run_id[:8]}).")
    collected = context.instance.get_materialized_partitions(dg.AssetKey("metric_features"))
    on_the_way = partitions_on_the_way(context.instance, context.repository_def.asset_graph)
    watched = windows_of_day(day) + ([day] if waits_for_training else [])
    reason = day_wait_reason(day, watched, set(collected), on_the_way,
                             missing_may_still_come=at.hour < missing_windows_until_hour)
    if reason:
        return dg.SkipReason(reason)
    return dg.RunRequest(run_key=day, partition_key=day)


@dg.schedule(cron_schedule=TRAINING_CRON, job=training_job, execution_timezone="UTC",
             description="03:00 UTC: retrain the anomaly models on the day that just ended, once none of its "
                         "windows is still queued or running (re-checked every 10 minutes).")
def training_schedule(context: dg.ScheduleEvaluationContext):
    return _launch_day_once(context, "training_schedule", waits_for_training=False,
                            missing_windows_until_hour=TRAINING_WAITS_FOR_MISSING_WINDOWS_UNTIL_HOUR)


@dg.schedule(cron_schedule=REPORT_CRON, job=report_job, execution_timezone="UTC",
             description="09:00 UTC: the daily intelligence report for the day that just ended, once none of its "
                         "windows nor its training is still queued or running (re-checked every 10 minutes).")
def report_schedule(context: dg.ScheduleEvaluationContext):
    # The report also reads the day's model (learning status); missing windows are reported as such.
    return _launch_day_once(context, "report_schedule", waits_for_training=True, missing_windows_until_hour=0)


@dg.sensor(job=critical_alert_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Reacts at once to windows with critical anomalies: launches the critical alert for each.")
def critical_anomaly_sensor(context: dg.SensorEvaluationContext):
    # A plain sensor walking every `anomalies` materialization after its cursor: an asset
    # sensor sees only the newest one per tick, so a backfill that scores several windows
    # between two ticks would lose the alerts of all but the last.
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("anomalies"), after_storage_id=after), limit=500,
        ascending=True).records
    if not records:
        return dg.SkipReason("no new anomalies materialization")
    requests = []
    for record in records:
        mat = record.asset_materialization
        critical = mat.metadata.get("critical_count") if mat is not None else None
        count = int(critical.value) if critical is not None else 0
        if mat is not None and mat.partition is not None and count > 0:
            requests.append(dg.RunRequest(run_key=f"critical-{mat.partition}-{record.storage_id}",
                                          partition_key=mat.partition,
                                          tags={"neuropilot/critical_count": str(count)}))
    cursor = str(records[-1].storage_id)
    if not requests:
        return dg.SensorResult(skip_reason=f"no critical anomaly in {len(records)} new window(s)", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


human_override_job = dg.define_asset_job(
    "record_human_override", selection=dg.AssetSelection.assets("human_overrides"),
    description="Record managed thresholds changed by a human so the policy adopts and holds them.",
)


@dg.sensor(job=human_override_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Notices a managed threshold changed by someone other than NeuroPilot (a commit or an edit) "
                       "and records it, so the next decision adopts the human's value and holds it.")
def human_override_sensor(context: dg.SensorEvaluationContext):
    from .assets.common import latest_services
    from .assets.overrides import changes_fingerprint, pending_changes
    from .core.config import load_ops_config
    from .storage.state import StateStore
    from .storage.warehouse import Warehouse

    cfg = load_ops_config()
    state = StateStore(cfg.state_dir)
    repo = cfg.infra()
    repo.clone_if_missing()
    if repo.remote and (cfg.infra_repo / ".git").exists():
        with repo.locked(timeout_s=30):  # people push their changes to the remote, not into this clone
            repo.sync_with_remote()
    found = {s: c for s in latest_services(cfg, Warehouse(cfg.warehouse_dir)) if (c := pending_changes(cfg, state, s))}
    if not found:
        return dg.SkipReason("no managed value changed by a human")
    return dg.RunRequest(run_key=changes_fingerprint(found),
                         tags={"neuropilot/overrides": ",".join(f"{s}:{c['var']}" for s, cs in found.items() for c in cs)})


@dg.run_failure_sensor(monitored_jobs=[ops_cycle_job, training_job, report_job, critical_alert_job],
                       default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=30,
                       description="Posts failed runs of the pipeline's jobs to Slack (within the hourly limit).")
def run_failure_to_slack(context: dg.RunFailureSensorContext):
    from .assets.deliver import slack_webhook
    from .core.config import load_ops_config

    webhook = slack_webhook(load_ops_config())
    if webhook is None:
        return dg.SkipReason("SLACK_WEBHOOK_URL is not set")
    run = context.dagster_run
    partition = run_partitions_label(run)
    message = context.failure_event.message or "run failed"
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
    delivery = webhook.post({"text": f":x: NeuroPilot {run.job_name} failed for {partition}",
                             "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text":
                                         f"*:x: {run.job_name} failed* for `{partition}`\n{message[:500]}\n"
                                         f"<{base}/runs/{run.run_id}|Open the run>"}}]}, f"failure of {run.run_id}")
    if not delivery.ok:
        return dg.SkipReason(f"could not post the failure to Slack: {delivery.status}")


RETRY_DELIVERY_EVERY_S = 1800


@dg.sensor(job=delivery_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED,
           description="When Slack or Notion refused a report, retries every 30 minutes until they take it; "
                       "the run delivers every owed report oldest first, each once, within the hourly limit.")
def undelivered_reports_sensor(context: dg.SensorEvaluationContext):
    from .assets.deliver import notion_publisher, pending_retry, slack_webhook
    from .core.config import load_ops_config
    from .storage.state import StateStore

    cfg = load_ops_config()
    channels = [name for name, configured in (("slack", slack_webhook(cfg) is not None),
                                              ("notion", notion_publisher() is not None)) if configured]
    if not channels:
        return dg.SkipReason("no delivery channel is configured")
    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    date = pending_retry(cfg, StateStore(cfg.state_dir), channels, today)
    if date is None:
        return dg.SkipReason("every report was delivered")
    # One retry per half hour: the run key repeats within the slot, so the daemon launches it once.
    slot = int(pd.Timestamp.now(tz="UTC").timestamp() // RETRY_DELIVERY_EVERY_S)
    return dg.RunRequest(run_key=f"redeliver-{date}-{slot}", partition_key=date)


JOBS = [ops_cycle_job, training_job, report_job, critical_alert_job, human_override_job, delivery_job]
SCHEDULES = [ops_cycle_schedule, training_schedule, report_schedule]
SENSORS = [critical_anomaly_sensor, human_override_sensor, run_failure_to_slack, undelivered_reports_sensor]
