"""Demand traces as users export them: whatever the timestamp format, separator or header,
`neuropilot backtest` must read the same demand, or refuse with what to fix."""

import json

import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.cli import main
from neuropilot_pipeline.core.backtest import TraceError, load_trace

START = pd.Timestamp("2024-03-01", tz="UTC")
MINUTES = pd.date_range(START, periods=240, freq="1min")
DEMAND = np.round(1000 + 400 * np.sin(np.arange(240) / 40.0))


def _unix(unit: str) -> np.ndarray:
    return ((MINUTES - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, unit)).to_numpy()


def _lines(stamps, sep: str = ",", header: str | None = "timestamp,requests") -> str:
    rows = [f"{t}{sep}{int(v)}" for t, v in zip(stamps, DEMAND)]
    return "\n".join(([header.replace(",", sep)] if header else []) + rows) + "\n"


FORMATS = {
    "ISO 8601 in UTC": _lines(MINUTES.strftime("%Y-%m-%dT%H:%M:%SZ")),
    "ISO 8601 at +02:00": _lines((MINUTES + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")),
    "Unix seconds": _lines(_unix("s")),
    "Unix milliseconds": _lines(_unix("ms")),
    "semicolons, other names": _lines(MINUTES.strftime("%Y-%m-%d %H:%M"), ";", "Time;Hits"),
    "tabs": _lines(MINUTES.strftime("%Y-%m-%d %H:%M:%S"), "\t"),
    "no header": _lines(MINUTES.strftime("%Y-%m-%dT%H:%M:%SZ"), header=None),
    "no header, Unix seconds": _lines(_unix("s"), header=None),
    "spreadsheet export (byte-order mark, CRLF)": "\ufeff" + _lines(MINUTES.strftime("%Y-%m-%d %H:%M")).replace(
        "\n", "\r\n"),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_common_export_format_reads_as_the_same_demand(tmp_path, name):
    path = tmp_path / "trace.csv"
    path.write_text(FORMATS[name])
    trace = load_trace(path)
    assert trace.start == START and trace.step_minutes == 1 and trace.missing_minutes == 0
    # As named in the file (a byte-order mark is not part of the name: --timestamp-column must match it).
    assert (trace.timestamp_column, trace.count_column) == (("Time", "Hits") if "other names" in name
                                                            else ("timestamp", "requests"))
    np.testing.assert_array_equal(trace.requests, DEMAND)


def test_a_minute_index_is_refused_not_read_as_one_instant(tmp_path):
    # Numbers that are not Unix times used to be read as nanoseconds since 1970: the whole
    # trace fell into its first minute and the backtest ran on one minute of demand.
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,requests\n" + "".join(f"{m},{v}\n" for m, v in enumerate(DEMAND)))
    with pytest.raises(TraceError, match=r"not Unix times .* ISO 8601 .* --timestamp-column"):
        load_trace(path)


def test_the_timestamp_and_request_columns_are_found_among_others(tmp_path):
    path = tmp_path / "trace.csv"
    frame = pd.DataFrame({"response_time_ms": 120.0, "timestamp": MINUTES.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "error_rate": 0.01, "requests": DEMAND})
    frame.to_csv(path, index=False)
    trace = load_trace(path)
    assert (trace.timestamp_column, trace.count_column) == ("timestamp", "requests")
    np.testing.assert_array_equal(trace.requests, DEMAND)


def test_empty_counts_and_sub_minute_samples(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,requests\n2024-03-01T00:00:00Z,10\n2024-03-01T00:01:00Z,\n2024-03-01T00:02:00Z,30\n")
    trace = load_trace(empty)
    np.testing.assert_array_equal(trace.requests, [10, 0, 30])
    assert trace.missing_minutes == 1  # an empty count is a missing sample, not a quiet minute
    fine = tmp_path / "fifteen_seconds.csv"
    fine.write_text("timestamp,requests\n" + "".join(f"2024-03-01T00:0{m}:{s:02d}Z,{m + 1}\n"
                                                     for m in range(3) for s in (0, 15, 30, 45)))
    np.testing.assert_array_equal(load_trace(fine).requests, [4, 8, 12])


def test_backtest_command_takes_named_columns_and_reports_what_it_read(tmp_path, capsys):
    path = tmp_path / "trace.csv"
    pd.DataFrame({"when": _unix("s"), "p95_ms": 180.0, "calls_per_minute": DEMAND}).to_csv(path, index=False)
    assert main(["backtest", str(path), "--policy", "fixed", "--peak-instances", "10", "--out", str(tmp_path / "out"),
                 "--timestamp-column", "when", "--count-column", "calls_per_minute"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["minutes"] == 240 and summary["trace"] == {
        "timestamp_column": "when", "count_column": "calls_per_minute", "step_minutes": 1.0,
        "first_minute": START.isoformat()}
    capsys.readouterr()
    assert main(["backtest", str(path), "--out", str(tmp_path / "out2"), "--count-column", "requests"]) == 2
    error = capsys.readouterr().err
    assert "no count column 'requests'" in error and "calls_per_minute" in error and "--count-column" in error
    assert not (tmp_path / "out2").exists()
