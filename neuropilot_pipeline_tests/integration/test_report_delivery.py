"""Slack delivery through `requests` against a local server speaking the incoming-webhook API."""

import http.server
import json
import threading
import time

import dagster as dg
import pandas as pd
import pytest

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.atomic import atomic_write_json
from neuropilot_pipeline.core.report import SCHEMA_VERSION, service_report
from neuropilot_pipeline.core.yaml_edit import update_yaml_values

DAY = "2026-11-02"
SECRET = "T000/B000/planted-webhook-secret-7f3e"


class SlackServer(http.server.ThreadingHTTPServer):
    """POST /services/<secret> with a JSON body -> 200 "ok"; or 429 / 500 first, as told."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.posts = [], []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/services/{SECRET}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv: SlackServer = self.server
        code = srv.script.pop(0) if srv.script else 200
        if code == "hang":
            time.sleep(2)
            code = 200
        if self.path != f"/services/{SECRET}":
            code = 404
        if code == 200:
            payload = json.loads(body)
            if not payload.get("text") or len(payload.get("blocks", [])) > 50:
                code = 400
            else:
                srv.posts.append((time.time(), payload))
        self.send_response(code)
        if code == 429:
            self.send_header("Retry-After", "1")
        text = {200: b"ok", 400: b"invalid_blocks", 404: b"no_service", 429: b"rate_limited"}.get(code, b"error")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


@pytest.fixture
def slack():
    server = SlackServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def home(tmp_path, monkeypatch, slack):
    config = prepare_demo_home(tmp_path, fresh=True)
    update_yaml_values(config, {"delivery.backoff_seconds": 0.05, "delivery.retries": 2})
    monkeypatch.setenv("NEUROPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    ts = pd.date_range(DAY, periods=60, freq="1min", tz="UTC")
    day = pd.DataFrame({"ts": ts, "cpu_percent": 50.0, "memory_percent": 40.0, "p95_latency_ms": 150.0,
                        "error_rate_percent": 0.1, "request_rate_per_s": 10.0, "db_query_p95_ms": 5.0,
                        "instance_count": 3.0, "cost_usd": 0.002})
    anomalies = pd.DataFrame({"ts": [ts[5]], "metric": ["p95_latency_ms"], "severity": ["critical"], "score": [7.0],
                              "value": [900.0], "explanation": ["zscore 7.0: value 900 vs baseline 150"]})
    report = {"schema_version": SCHEMA_VERSION, "date": DAY, "services": {"web": service_report(
        "web", day, day, day, anomalies, pd.DataFrame(), [1.0], None, 99.95, 250, 250)}}
    atomic_write_json(tmp_path / "reports" / "daily_report_20261102.json", report)
    return tmp_path


@pytest.fixture
def fleet_home(home):
    """The same home with a 40-service report: svc-07 missed its SLA, the others are calm."""
    ts = pd.date_range(DAY, periods=60, freq="1min", tz="UTC")
    calm = pd.DataFrame({"ts": ts, "cpu_percent": 50.0, "memory_percent": 40.0, "p95_latency_ms": 150.0,
                         "error_rate_percent": 0.1, "request_rate_per_s": 10.0, "db_query_p95_ms": 5.0,
                         "instance_count": 3.0, "cost_usd": 0.002})
    services = {}
    for i in range(40):
        day = calm.assign(p95_latency_ms=900.0, error_rate_percent=12.0) if i == 7 else calm
        services[f"svc-{i:02d}"] = service_report(f"svc-{i:02d}", day, calm, calm, pd.DataFrame(), pd.DataFrame(),
                                                  [1.0], None, 99.95, 250, 250)
    report = {"schema_version": SCHEMA_VERSION, "date": DAY, "services": services,
              "charted_services": ["svc-07", "svc-00", "svc-01"]}
    atomic_write_json(home / "reports" / "daily_report_20261102.json", report)
    return home


def deliver(resend=False):
    from neuropilot_pipeline.definitions import defs

    return dg.materialize([defs.get_assets_def("report_delivery")], partition_key=DAY,
                          resources={"neuropilot": defs.resources["neuropilot"]},
                          run_config={"ops": {"report_delivery": {"config": {"resend": resend}}}},
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def status(result):
    return result.asset_materializations_for_node("report_delivery")[-1].metadata["slack"].value


def test_card_is_posted_once_per_date_unless_resent(home, slack):
    assert status(deliver()) == "delivered"
    (_, payload), = slack.posts
    blocks = payload["blocks"]
    assert blocks[0]["type"] == "header" and "2026-11-02" in blocks[0]["text"]["text"] and "health" in blocks[0]["text"]["text"]
    text = json.dumps(blocks)
    assert "SLA" in text and "p95 latency" in text and "critical 1" in text and "Recommendations" in text
    assert blocks[-1]["type"] == "context" and "/runs/" in blocks[-1]["elements"][0]["text"]
    assert status(deliver()).startswith("already delivered at")
    assert len(slack.posts) == 1
    assert status(deliver(resend=True)) == "delivered" and len(slack.posts) == 2


def test_a_fleet_card_leads_with_the_services_needing_attention_and_fits_slack(fleet_home, slack):
    assert status(deliver()) == "delivered"
    (_, payload), = slack.posts
    blocks = payload["blocks"]
    assert len(blocks) <= 50  # Slack's limit
    assert "40 services" in blocks[0]["text"]["text"] and "svc-07" in blocks[1]["text"]["text"]
    assert "svc-07" in blocks[3]["text"]["text"]  # the first card is the service that missed its SLA
    assert "more services are in the full report" in json.dumps(blocks[-2:])


def test_429_waits_for_retry_after_and_500_backs_off(home, slack):
    slack.script = [429, 500]
    t0 = time.time()
    assert status(deliver()) == "delivered"
    assert time.time() - t0 >= 1.0  # Retry-After: 1 was honoured
    assert len(slack.posts) == 1


def test_failed_delivery_is_recorded_keeps_the_report_and_never_leaks_the_webhook(home, slack):
    slack.script = [500, 500, 500]
    result = deliver()
    assert result.success  # the report is safe; delivery is retried by the next run
    mat_status = status(result)
    assert "after 3 attempts: HTTP 500" in mat_status and SECRET not in mat_status
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["slack_delivered"]
    assert not check.passed
    assert (home / "reports" / "daily_report_20261102.json").exists()
    assert status(deliver()) == "delivered"  # not marked delivered before, so the next run posts
    for path in home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_hourly_notification_limit_holds(home, slack, monkeypatch):
    monkeypatch.setenv("NEUROPILOT_RATE_LIMITS__SLACK_NOTIFICATIONS_PER_HOUR", "1")
    assert status(deliver()) == "delivered"
    result = deliver(resend=True)
    assert "slack_notifications_per_hour" in status(result) and len(slack.posts) == 1


def test_failed_pipeline_runs_are_posted(home, slack, monkeypatch):
    from neuropilot_pipeline.automation import run_failure_to_slack
    from neuropilot_pipeline.definitions import defs

    monkeypatch.setenv("NEUROPILOT_SOURCE__KIND", "prometheus")  # no PROMETHEUS_URL: the cycle fails
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("ops_cycle").execute_in_process(partition_key="2026-11-02-06:00",
                                                                      instance=instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(sensor_name="run_failure_to_slack", dagster_event=failure,
                                                     dagster_instance=instance, dagster_run=result.dagster_run)
        run_failure_to_slack(context.for_run_failure())
    (_, payload), = slack.posts
    text = payload["blocks"][0]["text"]["text"]
    assert "ops_cycle failed" in text and "2026-11-02-06:00" in text and "/runs/" in text


def test_a_hanging_slack_times_out_and_is_retried(home, slack):
    update_yaml_values(home / "ops_config.yaml", {"delivery.timeout_seconds": 0.5})
    slack.script = ["hang"]
    assert status(deliver()) == "delivered"  # the first attempt timed out, the retry went through


def test_critical_anomalies_are_posted_at_once_with_their_explanation(home, slack):
    from neuropilot_pipeline.definitions import defs
    from neuropilot_pipeline.storage.warehouse import Warehouse

    key = "2026-11-02-06:00"
    Warehouse(home / "warehouse").write_partition("anomalies", key, pd.DataFrame({
        "partition": [key, key], "service": ["web", "web"], "metric": ["p95_latency_ms", "cpu_percent"],
        "ts": pd.to_datetime(["2026-11-02 07:15", "2026-11-02 07:16"], utc=True), "severity": ["critical", "medium"],
        "explanation": ["zscore 9.1: value 2400 vs baseline 150 ± 12", "seasonal 3.4"]}))
    result = dg.materialize([defs.get_assets_def("critical_alerts")], partition_key=key,
                            resources={"neuropilot": defs.resources["neuropilot"]},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.asset_materializations_for_node("critical_alerts")[-1].metadata["slack"].value == "delivered"
    (_, payload), = slack.posts
    text = payload["blocks"][0]["text"]["text"]
    assert "1 critical anomalies in 2026-11-02-06:00" in text and "zscore 9.1: value 2400 vs baseline 150" in text
    assert "seasonal 3.4" not in text  # only the critical ones
