"""Bad answers from a metrics source: each is refused with its cause and fix, and nothing
half-right reaches the warehouse; harmless oddities (order, stray future samples) change nothing."""

import re
import urllib.parse

import pandas as pd
import pytest

from neuropilot_pipeline.core.prometheus import SourceError
from neuropilot_pipeline.storage.warehouse import Warehouse

from .conftest import DAY
from .test_prometheus_source import client, home, materialize  # noqa: F401 - fixtures

pytestmark = pytest.mark.prometheus
HOUR = (DAY, DAY + pd.Timedelta(hours=1))
WINDOW = "2026-11-01-06:00"


def query_of(path: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("query", [""])[0]


def failure_text(result) -> str:
    return " ".join(e.step_failure_data.error.message for e in result.all_events if e.is_step_failure)


def test_malformed_json_is_named_and_not_retried_forever(proxy):
    proxy.mode = "malformed"
    with pytest.raises(SourceError, match="malformed or truncated JSON"):
        client(proxy.url, retries=2).query_range("np_cpu_percent", *HOUR)


def test_truncated_response_is_retried_then_named(proxy):
    proxy.mode = "truncated"
    with pytest.raises(SourceError, match="truncated response"):
        client(proxy.url, retries=2).query_range("np_cpu_percent", *HOUR)
    assert len(proxy.requests) == 3


def test_wrong_content_type_is_named(proxy):
    proxy.mode = "wrong_type"
    with pytest.raises(SourceError, match="application/octet-stream, not JSON"):
        client(proxy.url).query_range("np_cpu_percent", *HOUR)


@pytest.mark.parametrize("mode", ["huge", "huge_undeclared"])
def test_enormous_response_is_cut_off_with_the_fix(proxy, mode):
    proxy.mode = mode
    with pytest.raises(SourceError, match=r"more than 1 MiB.*np_cpu_percent.*sum by \(service\)"):
        client(proxy.url, max_response_bytes=2**20).query_range("np_cpu_percent", *HOUR)


def _through(proxy, monkeypatch, transform):
    proxy.mode, proxy.transform = "transform", transform
    monkeypatch.setenv("PROMETHEUS_URL", proxy.url)


def _scale(metric, factor):
    def transform(path, body):
        if query_of(path) == f"np_{metric}":
            for series in body["data"]["result"]:
                series["values"] = [[t, repr(float(v) * factor)] for t, v in series["values"]]
        return body
    return transform


@pytest.mark.parametrize("metric, factor, expected", [
    ("cpu_percent", -1.0, r"cpu_percent must be a percentage in 0–100: \d+ value\(s\), e.g. -"),
    ("error_rate_percent", 1e6, r"error_rate_percent must be a percentage.*100 \*"),
    ("request_rate_per_s", -1.0, r"request_rate_per_s cannot be negative"),
    ("p95_latency_ms", 0.001, r"p95_latency_ms of service '(web|api)' has a median of .* seconds read as milliseconds. "
                               r"Multiply the query by 1000"),
])
def test_impossible_values_are_refused_and_nothing_is_stored(home, proxy, monkeypatch, metric, factor, expected):
    assert materialize(WINDOW).success  # a good version of the partition first
    wh = Warehouse(home / "warehouse")
    good = wh.partition_path("raw_metrics", WINDOW).read_bytes()
    _through(proxy, monkeypatch, _scale(metric, factor))
    result = materialize(WINDOW)
    assert not result.success
    text = failure_text(result)
    assert re.search(expected, text), text
    assert "nothing was written" in text
    assert wh.partition_path("raw_metrics", WINDOW).read_bytes() == good  # the good partition is intact


def test_samples_out_of_order_and_in_the_future_change_nothing(home, proxy, monkeypatch):
    assert materialize(WINDOW).success
    wh = Warehouse(home / "warehouse")
    expected = wh.read_partition("raw_metrics", WINDOW)

    def shuffle_and_add_future(path, body):
        for series in body["data"]["result"]:
            if "values" not in series:  # an instant query (counter resets)
                continue
            values = series["values"][::-1]  # newest first
            last = float(values[0][0])
            values.append([last + 86_400 * 365, "12345"])  # a year ahead: outside the window
            series["values"] = values
        return body

    _through(proxy, monkeypatch, shuffle_and_add_future)
    assert materialize(WINDOW).success
    pd.testing.assert_frame_equal(wh.read_partition("raw_metrics", WINDOW), expected)
