"""raw_metrics from a real Prometheus, and the failures real monitoring produces."""

import re

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.prometheus import (
    Endpoint, PrometheusClient, QueryLedger, RateLimitExceeded, SourceError, split_range,
)
from neuropilot_pipeline.core.telemetry import METRIC_COLUMNS
from neuropilot_pipeline.core.yaml_edit import update_yaml_values
from neuropilot_pipeline.storage.warehouse import Warehouse

from .conftest import DAY, SERVICES

pytestmark = pytest.mark.prometheus
QUERIES = {m: f"np_{m}" for m in METRIC_COLUMNS}


def client(url, **kw):
    kw.setdefault("backoff_s", 0.01)
    return PrometheusClient(Endpoint(url, **kw.pop("endpoint", {})), **kw)


@pytest.fixture
def home(tmp_path, monkeypatch, prometheus):
    config = prepare_demo_home(tmp_path, fresh=True)
    update_yaml_values(config, {"services": list(SERVICES), "source.kind": "prometheus", "source.queries": QUERIES})
    from ruamel.yaml import YAML
    y = YAML()
    doc = y.load(config.read_text())
    doc["source"]["counter_resets_query"] = "sum by (service) (resets(np_requests_total[{window}]))"
    with config.open("w") as fh:
        y.dump(doc, fh)
    monkeypatch.setenv("NEUROPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    monkeypatch.setenv("PROMETHEUS_URL", prometheus["url"])
    return tmp_path


def materialize(key):
    from neuropilot_pipeline.definitions import defs

    result = dg.materialize([defs.get_assets_def("raw_metrics")], partition_key=key,
                            resources={"neuropilot": defs.resources["neuropilot"],
                                       "metrics_source": defs.resources["metrics_source"]},
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    return result


def test_raw_metrics_partitions_hold_exactly_the_source_values_and_reruns_are_idempotent(home, prometheus):
    windows = ["2026-11-01-00:00", "2026-11-01-06:00", "2026-11-01-12:00", "2026-11-01-18:00"]
    for key in windows:
        assert materialize(key).success
    wh = Warehouse(home / "warehouse")
    stored = wh.query("SELECT * FROM raw_metrics ORDER BY service, ts")
    source = prometheus["frame"].sort_values(["service", "ts"]).reset_index(drop=True)
    assert len(stored) == len(source) == 2 * 1440
    assert list(stored["service"]) == list(source["service"])
    for metric in METRIC_COLUMNS:
        np.testing.assert_allclose(stored[metric].to_numpy(), source[metric].to_numpy(), rtol=1e-9, err_msg=metric)
    assert (stored["instances_reporting"] == 2).all()  # rates were exported by two instances
    first = wh.partition_path("raw_metrics", windows[0]).read_bytes()
    assert materialize(windows[0]).success
    assert wh.partition_path("raw_metrics", windows[0]).read_bytes() == first


def test_range_over_the_points_limit_is_split_and_prometheus_would_refuse_it_whole(prometheus):
    c = client(prometheus["url"])
    start, end = DAY - pd.Timedelta(days=4), DAY + pd.Timedelta(days=5)  # 12,960 one-minute points
    assert len(split_range(start, end)) == 2
    series = c.query_range('np_cpu_percent{service="web"}', start, end)
    values = series[0]["values"]
    assert len(values) == 1440 + 5  # the day, plus the 5-minute lookback after its last sample
    with pytest.raises(SourceError, match="11,000 points"):
        c._get("/api/v1/query_range", {"query": "np_cpu_percent", "start": start.timestamp(),
                                       "end": end.timestamp(), "step": 60})


def test_invalid_promql_surfaces_prometheus_error_text(prometheus):
    with pytest.raises(SourceError, match="bad_data.*parse error"):
        client(prometheus["url"]).query_range("sum(rate(np_cpu_percent[", DAY, DAY + pd.Timedelta(hours=1))


def test_wrong_token_is_refused_clearly_and_the_token_never_appears(proxy):
    proxy.mode, proxy.token = "token", "right-token"
    secret = "s3cr3t-wrong-token-value"
    with pytest.raises(SourceError, match="refused the credentials") as err:
        client(proxy.url, endpoint={"bearer_token": secret}).query_range("np_cpu_percent", DAY, DAY + pd.Timedelta(hours=1))
    assert secret not in str(err.value)
    ok = client(proxy.url, endpoint={"bearer_token": "right-token"}).query_range("np_cpu_percent", DAY,
                                                                                DAY + pd.Timedelta(hours=1))
    assert ok


def test_503_then_success_is_retried(proxy):
    proxy.mode, proxy.failures_left = "fail_then_pass", 2
    assert client(proxy.url, retries=3).query_range("np_cpu_percent", DAY, DAY + pd.Timedelta(hours=1))
    assert len(proxy.requests) == 3


def test_hanging_server_times_out_after_retries(proxy):
    proxy.mode = "hang"
    with pytest.raises(SourceError, match="no answer within 0.5 s"):
        client(proxy.url, timeout_s=0.5, retries=1).query_range("np_cpu_percent", DAY, DAY + pd.Timedelta(hours=1))


def test_html_error_page_is_named_for_what_it_is(proxy):
    proxy.mode = "html"
    with pytest.raises(SourceError, match="text/html, not JSON"):
        client(proxy.url).query_range("np_cpu_percent", DAY, DAY + pd.Timedelta(hours=1))


def test_empty_result_names_the_metric_query_and_window(home):
    update_yaml_values(home / "ops_config.yaml", {"source.queries": {**QUERIES, "db_query_p95_ms": "np_missing"}})
    result = materialize("2026-11-01-00:00")
    assert not result.success
    text = str([e.step_failure_data.error.message for e in result.all_events if e.is_step_failure])
    assert "No metrics returned for db_query_p95_ms" in text and "np_missing" in text and "2026-11-01T00:00" in text


def test_query_budget_holds_across_runs(tmp_path):
    clock = [1000.0]
    ledger = QueryLedger(tmp_path / "ledger.json", per_hour=10, clock=lambda: clock[0])
    ledger.reserve(8, "raw_metrics 2026-11-01-00:00")
    ledger.record(8)
    again = QueryLedger(tmp_path / "ledger.json", per_hour=10, clock=lambda: clock[0])
    with pytest.raises(RateLimitExceeded, match="needs 8 queries but only 2 of the 10"):
        again.reserve(8, "raw_metrics 2026-11-01-06:00")
    clock[0] += 3601
    again.reserve(8, "raw_metrics 2026-11-01-06:00")


def test_check_sources_reports_each_query_with_the_fix(home, prometheus, capsys, monkeypatch):
    from neuropilot_pipeline.cli import main

    update_yaml_values(home / "ops_config.yaml", {"source.queries": {**QUERIES, "db_query_p95_ms": "np_missing"}})
    # The data lies on 2026-11-01; look back far enough to see it.
    minutes = int((pd.Timestamp.now(tz="UTC") - DAY) / pd.Timedelta(minutes=1))
    assert main(["check-sources", "--home", str(home), "--minutes", str(minutes)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"connection \+ auth +ok +prometheus", out)
    assert "cpu_percent" in out and "services: api, web" in out
    assert "db_query_p95_ms" in out and "FAIL" in out and "np_missing" in out


def test_partially_missing_window_is_stored_with_its_gaps_marked(home):
    # The TSDB ends at 2026-11-01 23:59; Prometheus' 5-minute look-back covers 00:00-00:04.
    result = materialize("2026-11-02-00:00")
    assert result.success
    mat = result.asset_materializations_for_node("raw_metrics")[-1]
    assert mat.metadata["gap_minutes"].value == 2 * 355
    stored = Warehouse(home / "warehouse").read_partition("raw_metrics", "2026-11-02-00:00")
    assert len(stored) == 2 * 360 and stored["gap"].sum() == 2 * 355
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["complete_minutes"] is False


def test_grafana_cloud_through_the_data_source_proxy_and_the_key_stays_secret(home, proxy, prometheus, monkeypatch):
    key = "glsa_planted-secret-4f9c"
    proxy.mode, proxy.token = "grafana", key
    update_yaml_values(home / "ops_config.yaml", {"source.kind": "grafana", "source.grafana.datasource_uid": "prom-uid"})
    monkeypatch.setenv("GRAFANA_URL", proxy.url)
    monkeypatch.setenv("GRAFANA_API_KEY", key)
    result = materialize("2026-11-01-06:00")
    assert result.success
    assert proxy.requests and all(p.startswith(("/api/datasources/proxy/uid/prom-uid/api/v1/query_range",
                                                "/api/datasources/proxy/uid/prom-uid/api/v1/query?"))
                                   for p in proxy.requests)
    stored = Warehouse(home / "warehouse").read_partition("raw_metrics", "2026-11-01-06:00")
    source = prometheus["frame"]
    source = source[(source["ts"] >= "2026-11-01 06:00") & (source["ts"] < "2026-11-01 12:00")]
    np.testing.assert_allclose(stored.sort_values(["service", "ts"])["cpu_percent"],
                               source.sort_values(["service", "ts"])["cpu_percent"])
    # The key appears nowhere a user or an attacker could read it afterwards.
    mat = result.asset_materializations_for_node("raw_metrics")[-1]
    assert key not in str(mat.metadata)
    for path in home.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    monkeypatch.setenv("GRAFANA_API_KEY", "wrong")
    failed = materialize("2026-11-01-12:00")
    assert not failed.success
    assert "refused the credentials" in str([e.step_failure_data.error.message for e in failed.all_events
                                             if e.is_step_failure])


def test_a_counter_reset_is_reported_in_its_window_only(home):
    first, second = materialize("2026-11-01-00:00"), materialize("2026-11-01-06:00")
    resets = first.asset_materializations_for_node("raw_metrics")[-1].metadata["counter_resets"].value
    assert resets == {"api": 0, "web": 1}
    checks = {c.check_name: c.passed for c in first.get_asset_check_evaluations()}
    assert checks["no_counter_resets"] is False
    assert second.asset_materializations_for_node("raw_metrics")[-1].metadata["counter_resets"].value == {"api": 0, "web": 0}
