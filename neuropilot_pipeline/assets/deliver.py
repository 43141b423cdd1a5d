"""report_delivery: the daily report to Slack, once per report date (unless re-sent on purpose)."""

import json
import os

import dagster as dg
import pandas as pd

from ..core.notify import SlackWebhook, report_blocks
from ..core.notion import NotionError, NotionPublisher, make_client
from ..core.prometheus import QueryLedger
from ..resources.neuropilot import NeuroPilotResource
from .partitions import daily_partitions
from .report import report_path

DELIVERY_STATE = "deliveries"


class DeliveryConfig(dg.Config):
    resend: bool = False  # post again even though this date was already delivered


def slack_webhook(cfg) -> SlackWebhook | None:
    url = os.environ.get("SLACK_WEBHOOK_URL")  # a secret: only ever from the environment
    if not url:
        return None
    ledger = QueryLedger(cfg.state_dir / "slack_ledger.json", cfg.rate_limits["slack_notifications_per_hour"],
                         unit="notifications", setting="rate_limits.slack_notifications_per_hour")
    delivery = cfg.raw.get("delivery") if isinstance(cfg.raw.get("delivery"), dict) else {}
    return SlackWebhook(url, ledger=ledger, backoff_s=float(delivery.get("backoff_seconds", 1.0)),
                        retries=int(delivery.get("retries", 4)), timeout_s=float(delivery.get("timeout_seconds", 10.0)))


@dg.asset(
    partitions_def=daily_partitions,
    group_name="report",
    kinds={"slack"},
    deps=["daily_report"],
    check_specs=[dg.AssetCheckSpec("slack_delivered", asset="report_delivery",
                                   description="The day's report reached Slack (when SLACK_WEBHOOK_URL is set)."),
                 dg.AssetCheckSpec("notion_delivered", asset="report_delivery",
                                   description="The day's report is its Notion page (when NOTION_API_KEY is set).")],
    description="Posts the day's report to Slack as a Block Kit card (SLACK_WEBHOOK_URL), at most once per date unless "
                "re-sent with config resend: true, and writes it as the date's page of the Notion database "
                "(NOTION_API_KEY, NOTION_DATABASE_ID; updated, not duplicated). A failed delivery is recorded and never "
                "loses the report.",
)
def report_delivery(context: dg.AssetExecutionContext, config: DeliveryConfig,
                    neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    day = context.partition_key
    path = report_path(cfg.reports_dir, day)
    if not path.exists():
        raise dg.Failure(f"No report for {day} at {path}: materialize daily_report for {day} first.")
    report = json.loads(path.read_text())
    state = neuropilot.state(cfg)
    webhook = slack_webhook(cfg)
    previous = state.read_json(DELIVERY_STATE, f"slack-{day}")
    if webhook is None:
        status, ok = "not configured (set SLACK_WEBHOOK_URL)", True
    elif previous and not config.resend:
        status, ok = f"already delivered at {previous['sent_at']}", True
    else:
        base = os.environ.get("DAGSTER_WEBSERVER_URL", "http://localhost:3000").rstrip("/")
        delivery = webhook.post(report_blocks(report, f"{base}/runs/{context.run.run_id}"), f"report {day}")
        ok, status = delivery.ok, delivery.status
        if delivery.ok:
            state.write_json(DELIVERY_STATE, f"slack-{day}", {"sent_at": pd.Timestamp.now(tz="UTC").isoformat(),
                                                              "attempts": delivery.attempts, "run_id": context.run.run_id})
        else:
            context.log.warning(f"Slack delivery of the {day} report failed: {status}. The report is saved at {path}; "
                                "the next materialization of report_delivery retries.")
    notion_status, notion_ok = publish_to_notion(report)
    if not notion_ok:
        context.log.warning(f"Notion publication of the {day} report failed: {notion_status}")
    return dg.MaterializeResult(
        metadata={"slack": status, "notion": notion_status, "report": dg.MetadataValue.path(str(path))},
        check_results=[
            dg.AssetCheckResult(check_name="slack_delivered", passed=ok, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"status": status}),
            dg.AssetCheckResult(check_name="notion_delivered", passed=notion_ok, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"status": notion_status}),
        ],
    )


def notion_publisher() -> NotionPublisher | None:
    key, database = os.environ.get("NOTION_API_KEY"), os.environ.get("NOTION_DATABASE_ID")
    if not key or not database:
        return None
    return NotionPublisher(make_client(key, os.environ.get("NOTION_BASE_URL") or None), database)


def publish_to_notion(report) -> tuple[str, bool]:
    publisher = notion_publisher()
    if publisher is None:
        return "not configured (set NOTION_API_KEY and NOTION_DATABASE_ID)", True
    try:
        page_id, action = publisher.publish(report)
    except NotionError as exc:
        return str(exc), False
    return f"{action} page {page_id}", True
