"""Slack and Notion down for hours, then back: every owed report is delivered once, oldest
first, within the hourly limit; the retry sensor asks for exactly what is owed."""

import json
import socket

import dagster as dg
import pandas as pd
import pytest

from neuropilot_pipeline.cli import main as cli_main
from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.atomic import atomic_write_json
from neuropilot_pipeline.core.report import SCHEMA_VERSION, service_report
from neuropilot_pipeline.core.yaml_edit import update_yaml_values
from neuropilot_pipeline_tests.integration.test_notion_delivery import ALL, DB, KEY, server_with
from neuropilot_pipeline_tests.integration.test_report_delivery import SlackServer

DAYS = ["2026-11-02", "2026-11-03", "2026-11-04"]


def closed_port_url(path: str = "") -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there, connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def write_report(home, day):
    ts = pd.date_range(day, periods=60, freq="1min", tz="UTC")
    frame = pd.DataFrame({"ts": ts, "cpu_percent": 50.0, "memory_percent": 40.0, "p95_latency_ms": 150.0,
                          "error_rate_percent": 0.1, "request_rate_per_s": 10.0, "db_query_p95_ms": 5.0,
                          "instance_count": 3.0, "cost_usd": 0.002})
    report = {"schema_version": SCHEMA_VERSION, "date": day, "services": {"web": service_report(
        "web", frame, frame, frame, pd.DataFrame(), pd.DataFrame(), [1.0], None, 99.95, 250, 250)}}
    atomic_write_json(home / "reports" / f"daily_report_{day.replace('-', '')}.json", report)


@pytest.fixture
def servers(tmp_path, monkeypatch):
    import threading

    slack = SlackServer()
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    notion = server_with(ALL)
    config = prepare_demo_home(tmp_path, fresh=True)
    update_yaml_values(config, {"delivery.backoff_seconds": 0.02, "delivery.retries": 1,
                                "delivery.timeout_seconds": 2, "delivery.backlog_days": 60,
                                "rate_limits.slack_notifications_per_hour": 2})
    monkeypatch.setenv("NEUROPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    monkeypatch.setenv("NOTION_API_KEY", KEY)
    monkeypatch.setenv("NOTION_DATABASE_ID", DB)
    yield {"home": tmp_path, "slack": slack, "notion": notion, "monkeypatch": monkeypatch}
    slack.shutdown()
    notion.shutdown()


def down(s):
    s["monkeypatch"].setenv("SLACK_WEBHOOK_URL", closed_port_url("/services/x"))
    s["monkeypatch"].setenv("NOTION_BASE_URL", closed_port_url())


def up(s):
    s["monkeypatch"].setenv("SLACK_WEBHOOK_URL", s["slack"].url)
    s["monkeypatch"].setenv("NOTION_BASE_URL", s["notion"].url)


def deliver(day):
    from neuropilot_pipeline.definitions import defs

    result = dg.materialize([defs.get_assets_def("report_delivery")], partition_key=day,
                            resources={"neuropilot": defs.resources["neuropilot"]},
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success  # an outage never fails the run or loses the report
    return result.asset_materializations_for_node("report_delivery")[-1].metadata


def sensor_request():
    from neuropilot_pipeline.automation import undelivered_reports_sensor
    from neuropilot_pipeline.definitions import defs

    result = undelivered_reports_sensor.evaluate_tick(dg.build_sensor_context(definitions=defs))
    return result.run_requests


def _date_of(payload):
    text = json.dumps(payload)
    return next(d for d in DAYS if d in text)


def notion_dates(notion):
    """Page dates in creation order (the server keeps pages in a dict, which keeps insertion order)."""
    return [p["properties"]["Date"]["date"]["start"] for p in notion.pages.values()]


def test_outage_then_recovery_delivers_each_report_once_in_order_within_the_limit(servers):
    s = servers
    up(s)
    assert cli_main(["notion-setup"]) == 0
    down(s)
    for day in DAYS:  # three 09:00 runs while both services are down
        write_report(s["home"], day)
        meta = deliver(day)
        assert "cannot connect" in meta["slack"].value or "waiting" in meta["slack"].value
        assert meta["still_pending"].value == {"slack": DAYS[:DAYS.index(day) + 1], "notion": DAYS[:DAYS.index(day) + 1]}
    assert not s["slack"].posts and not s["notion"].pages

    (request,) = sensor_request()  # the retry sensor asks for a run up to the newest owed report
    assert request.partition_key == DAYS[-1] and request.run_key.startswith(f"redeliver-{DAYS[-1]}-")
    assert [r.run_key for r in sensor_request()] == [request.run_key]  # same half-hour slot: launched once

    up(s)  # hours later, both are back
    meta = deliver(request.partition_key)
    # Slack: the hourly limit (2) lets the two oldest through, in order; the third waits.
    assert [_date_of(p) for _, p in s["slack"].posts] == DAYS[:2]
    assert meta["delivered_now"].value == {"slack": DAYS[:2], "notion": DAYS}
    assert meta["still_pending"].value == {"slack": DAYS[2:], "notion": []}
    assert notion_dates(s["notion"]) == DAYS  # one page per date, none twice
    assert [r.partition_key for r in sensor_request()] == [DAYS[2]]

    # An hour on, the limit has room again (age the ledger as the clock would).
    ledger = s["home"] / "state" / "slack_ledger.json"
    doc = json.loads(ledger.read_text())
    doc["sent"] = [t - 3601 for t in doc["sent"]]
    ledger.write_text(json.dumps(doc))
    deliver(DAYS[2])
    assert [_date_of(p) for _, p in s["slack"].posts] == DAYS  # each once, oldest first
    assert len(s["notion"].pages) == 3
    assert sensor_request() == []  # nothing owed: the sensor skips
    deliver(DAYS[2])  # a re-run sends nothing again
    assert len(s["slack"].posts) == 3 and len(s["notion"].pages) == 3
