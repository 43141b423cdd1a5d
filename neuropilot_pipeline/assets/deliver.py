"""report_delivery: the daily report to Slack, once per report date (unless re-sent on purpose)."""

import json
import os

import dagster as dg
import pandas as pd

from ..core.atomic import exclusive_lock
from ..core.notify import SlackWebhook, report_blocks
from ..core.notion import NotionError, NotionPublisher, make_client
from ..core.prometheus import QueryLedger
from ..resources.neuropilot import NeuroPilotResource
from .common import WHOLE_RANGE_IN_ONE_RUN, each_partition
from .partitions import daily_partitions
from ..storage.reports import report_store
from .report import report_name

DELIVERY_STATE = "deliveries"


class DeliveryConfig(dg.Config):
    resend: bool = False  # post again even though this date was already delivered


def slack_webhook(cfg) -> SlackWebhook | None:
    url = os.environ.get("SLACK_WEBHOOK_URL")  # a secret: only ever from the environment
    if not url:
        return None
    ledger = QueryLedger(cfg.local_state_dir / "slack_ledger.json", cfg.rate_limits["slack_notifications_per_hour"],
                         unit="notifications", setting="rate_limits.slack_notifications_per_hour")
    delivery = cfg.raw.get("delivery") if isinstance(cfg.raw.get("delivery"), dict) else {}
    return SlackWebhook(url, ledger=ledger, backoff_s=float(delivery.get("backoff_seconds", 1.0)),
                        retries=int(delivery.get("retries", 4)), timeout_s=float(delivery.get("timeout_seconds", 10.0)))


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="report",
    kinds={"slack"},
    deps=["daily_report"],
    check_specs=[dg.AssetCheckSpec("slack_delivered", asset="report_delivery",
                                   description="The day's report reached Slack (when SLACK_WEBHOOK_URL is set)."),
                 dg.AssetCheckSpec("notion_delivered", asset="report_delivery",
                                   description="The day's report is its Notion page (when NOTION_API_KEY is set).")],
    description="Posts the day's report to Slack as a Block Kit card (SLACK_WEBHOOK_URL) and writes it as the date's "
                "page of the Notion database (NOTION_API_KEY, NOTION_DATABASE_ID), each at most once per date unless "
                "re-sent with config resend: true (the Notion page is then updated, not duplicated). Reports a channel "
                "could not take are sent first, oldest first; a failure never loses a report.",
)
def report_delivery(context: dg.AssetExecutionContext, config: DeliveryConfig,
                    neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda day: _deliver_day(context, config, neuropilot, day))


def _deliver_day(context: dg.AssetExecutionContext, config: DeliveryConfig, neuropilot: NeuroPilotResource,
                 day: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    reports = report_store(cfg)
    if not reports.exists(report_name(day)):
        raise dg.Failure(f"No report for {day} at {reports.display(report_name(day))}: materialize daily_report for "
                         f"{day} first.")
    state = neuropilot.state(cfg)
    base = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
    webhook, publisher = slack_webhook(cfg), notion_publisher(cfg)
    channels = {}
    if webhook is not None:
        channels["slack"] = lambda report: _slack_send(webhook, report, f"{base}/runs/{context.run.run_id}")
    if publisher is not None:
        channels["notion"] = lambda report: _notion_send(publisher, report)
    # One delivery at a time (the 09:00 run, a retry from the sensor, a backfill), so a date is never sent twice.
    with exclusive_lock(cfg.local_state_dir / "delivery.lock", 600, "delivering reports"):
        outcome = {name: deliver_in_order(name, send, cfg, state, day, config.resend, context.run.run_id)
                   for name, send in channels.items()}
    for name, sent in outcome.items():
        for date, ok, status in sent:
            if not ok:
                context.log.warning(f"{name} delivery of the {date} report failed: {status}. The report is saved; "
                                    "undelivered_reports_sensor retries, oldest first.")
    slack_ok, slack_status = _status_of(outcome.get("slack"), day, state, "slack", "not configured (set SLACK_WEBHOOK_URL)")
    notion_ok, notion_status = _status_of(outcome.get("notion"), day, state, "notion",
                                          "not configured (set NOTION_API_KEY and NOTION_DATABASE_ID)")
    return dg.MaterializeResult(
        metadata={"slack": slack_status, "notion": notion_status, "report": dg.MetadataValue.path(reports.display(report_name(day))),
                  "delivered_now": dg.MetadataValue.json({n: [d for d, ok, _ in sent if ok] for n, sent in outcome.items()}),
                  "still_pending": dg.MetadataValue.json({n: undelivered(cfg, state, n, day) for n in outcome})},
        check_results=[
            dg.AssetCheckResult(check_name="slack_delivered", passed=slack_ok, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"status": slack_status}),
            dg.AssetCheckResult(check_name="notion_delivered", passed=notion_ok, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"status": notion_status}),
        ],
    )


def _slack_send(webhook: SlackWebhook, report: dict, run_url: str) -> tuple[bool, str]:
    delivery = webhook.post(report_blocks(report, run_url), f"report {report['date']}")
    return delivery.ok, delivery.status


def _notion_send(publisher: NotionPublisher, report: dict) -> tuple[bool, str]:
    try:
        page_id, action = publisher.publish(report)
    except NotionError as exc:
        return False, str(exc)
    return True, f"{action} page {page_id}"


def _status_of(sent, day, state, channel, not_configured) -> tuple[bool, str]:
    if sent is None:
        return True, not_configured
    for date, ok, status in sent:
        if date == day:
            return ok, status
    previous = state.read_json(DELIVERY_STATE, f"{channel}-{day}")
    if previous:
        return True, f"already delivered at {previous['sent_at']}"
    return False, "waiting: an earlier report is still undelivered (reports go out oldest first)"


def backlog_days(cfg) -> int:
    delivery = cfg.raw.get("delivery") if isinstance(cfg.raw.get("delivery"), dict) else {}
    return int(delivery.get("backlog_days", 7))


def undelivered(cfg, state, channel: str, up_to_day: str) -> list[str]:
    """Report dates on disk, within delivery.backlog_days of `up_to_day`, not yet delivered to `channel`, oldest first."""
    oldest = (pd.Timestamp(up_to_day) - pd.Timedelta(days=backlog_days(cfg))).strftime("%Y-%m-%d")
    dates = []
    for name in report_store(cfg).names("daily_report_", ".json"):
        stamp = name[:-len(".json")].rsplit("_", 1)[-1]
        if len(stamp) != 8 or not stamp.isdigit():
            continue
        date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
        if oldest <= date <= up_to_day and not state.read_json(DELIVERY_STATE, f"{channel}-{date}"):
            dates.append(date)
    return dates


def deliver_in_order(channel: str, send, cfg, state, day: str, resend: bool, run_id: str) -> list[tuple[str, bool, str]]:
    """Send every undelivered report up to `day`, oldest first, each at most once; stop at the
    first failure so a later report never overtakes an earlier one. Call under the delivery lock."""
    dates = undelivered(cfg, state, channel, day)
    if resend and day not in dates:
        dates.append(day)
    sent, reports = [], report_store(cfg)
    for date in dates:
        report = json.loads(reports.read_text(report_name(date)))
        ok, status = send(report)
        sent.append((date, ok, status))
        if ok:
            state.write_json(DELIVERY_STATE, f"{channel}-{date}", {
                "sent_at": pd.Timestamp.now(tz="UTC").isoformat(), "run_id": run_id, "status": status})
        else:
            state.write_json(DELIVERY_STATE, f"{channel}-failed-{date}", {
                "at": pd.Timestamp.now(tz="UTC").isoformat(), "status": status})
            break
    return sent


def pending_retry(cfg, state, channels: list[str], today: str) -> str | None:
    """The date to re-run report_delivery for when some delivery failed and is still owed: the
    newest undelivered report (the run sends the older ones first). None when nothing failed."""
    pending = {ch: undelivered(cfg, state, ch, today) for ch in channels}
    if not any(state.read_json(DELIVERY_STATE, f"{ch}-failed-{d}") for ch, dates in pending.items() for d in dates):
        return None
    return max(d for dates in pending.values() for d in dates)


def notion_publisher(cfg=None) -> NotionPublisher | None:
    key, database = os.environ.get("NOTION_API_KEY"), os.environ.get("NOTION_DATABASE_ID")  # secrets: env only
    if not key or not database:
        return None
    delivery = cfg.raw.get("delivery") if cfg is not None and isinstance(cfg.raw.get("delivery"), dict) else {}
    client = make_client(key, os.environ.get("NOTION_BASE_URL") or None, retries=int(delivery.get("retries", 4)),
                         initial_delay_ms=int(1000 * float(delivery.get("backoff_seconds", 1.0))))
    return NotionPublisher(client, database)


