"""Demand traces as users export them: whatever the timestamp format, separator or header,
`neuropilot backtest` must read the same demand, or refuse with what to fix."""

import json

import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.cli import main
from neuropilot_pipeline.core.traces import TraceError, load_trace

START = pd.Timestamp("2024-03-01", tz="UTC")
MINUTES = pd.date_range(START, periods=240, freq="1min")
DEMAND = np.round(1000 + 400 * np.sin(np.arange(240) / 40.0))


def _unix(unit: str) -> np.ndarray:
    return ((MINUTES - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, unit)).to_numpy()


def _lines(stamps, sep: str = ",", header: str | None = "timestamp,requests", extra: str = "") -> str:
    rows = [f"{t}{sep}{int(v)}{extra}" for t, v in zip(stamps, DEMAND)]
    return "\n".join(([header] if header else []) + rows) + "\n"


ISO = MINUTES.strftime("%Y-%m-%dT%H:%M:%SZ")
HEADERLESS = ("column 1", "column 2")
# name: (file text, (timestamp column, count column) as the trace reports them)
FORMATS = {
    "ISO 8601 in UTC": (_lines(ISO), ("timestamp", "requests")),
    "ISO 8601 at +02:00": (_lines((MINUTES + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")),
                           ("timestamp", "requests")),
    "Unix seconds": (_lines(_unix("s")), ("timestamp", "requests")),
    "Unix milliseconds": (_lines(_unix("ms")), ("timestamp", "requests")),
    "Unix nanoseconds": (_lines(_unix("ns")), ("timestamp", "requests")),
    "compact YYYYMMDDHHMM": (_lines(MINUTES.strftime("%Y%m%d%H%M")), ("timestamp", "requests")),
    "semicolons, other names": (_lines(MINUTES.strftime("%Y-%m-%d %H:%M"), ";", "Time;Hits"), ("Time", "Hits")),
    "tabs": (_lines(MINUTES.strftime("%Y-%m-%d %H:%M:%S"), "\t", "timestamp\trequests"), ("timestamp", "requests")),
    "pipes": (_lines(ISO, "|", "timestamp|requests"), ("timestamp", "requests")),
    "a quoted name holding a semicolon": (_lines(ISO, header='"Time (UTC; ISO 8601)",requests'),
                                          ("Time (UTC; ISO 8601)", "requests")),
    "semicolons, quoted names holding commas": (_lines(ISO, ";", '"Zeit (UTC, ISO)";"Anfragen, gesamt"'),
                                                ("Zeit (UTC, ISO)", "Anfragen, gesamt")),
    "Excel's sep= line": ("sep=;\n" + _lines(ISO, ";", "timestamp;requests"), ("timestamp", "requests")),
    "a header of numbers (pandas' unnamed columns)": (_lines(ISO, header="0,1"), ("0", "1")),
    "a header of numbers over Unix seconds": (_lines(_unix("s"), header="0,1"), ("0", "1")),
    "date and time of day in two columns": (
        _lines([f"{d},{t}" for d, t in zip(MINUTES.strftime("%Y-%m-%d"), MINUTES.strftime("%H:%M"))],
               header="Date,Time,Requests"), ("Time", "Requests")),
    "no header": (_lines(ISO, header=None), HEADERLESS),
    "no header, Unix seconds": (_lines(_unix("s"), header=None), HEADERLESS),
    "no header, a text column": (_lines(ISO, header=None, extra=",GET"), HEADERLESS),
    "no header, a text column first": (_lines([f"web-1,{t}" for t in ISO], header=None), ("column 2", "column 3")),
    "no header, the count first": ("".join(f"{int(v)},{t}\n" for t, v in zip(ISO, DEMAND)), ("column 2", "column 1")),
    "semicolons and decimal commas": (_lines(ISO, ";", "timestamp;requests", extra=",0"), ("timestamp", "requests")),
    "no header, semicolons and decimal commas": (_lines(ISO, ";", None, extra=",0"), HEADERLESS),
    # pandas' to_csv of a Series or of numbered columns: an unnamed index, then "0", "1", ...
    "a saved Series (unnamed index, column 0)": (",0\n" + "".join(f"{t},{int(v)}\n" for t, v in zip(ISO, DEMAND)),
                                                 ("Unnamed: 0", "0")),
    # A note column with a decimal comma does not turn the counts' decimal points into words.
    "tabs, decimal points, a note with a comma": (
        "timestamp\trequests\tnote\n" + "".join(f"{t}\t{int(v)}.0\t{'3,5' if i == 1 else 'ok'}\n"
                                                 for i, (t, v) in enumerate(zip(ISO, DEMAND))),
        ("timestamp", "requests")),
    "a saved DataFrame's index first": (
        ",timestamp,n\n" + "".join(f"{i},{t},{int(v)}\n" for i, (t, v) in enumerate(zip(ISO, DEMAND))),
        ("timestamp", "n")),
    "a spreadsheet's empty trailing rows": (
        _lines(ISO, ";", "timestamp;requests") + ";\n;\n", ("timestamp", "requests")),
    "German Excel: dotted day-first dates, semicolons": (
        _lines(MINUTES.strftime("%d.%m.%Y %H:%M"), ";", "Zeit;Anfragen"), ("Zeit", "Anfragen")),
    "date and time of day under other names": (
        _lines([f"{d};{t}" for d, t in zip(MINUTES.strftime("%d.%m.%Y"), MINUTES.strftime("%H:%M"))], ";",
               "Datum;Uhrzeit;Anfragen"), ("Uhrzeit", "Anfragen")),
    "a separator ending every data row": (_lines(ISO, extra=","), ("timestamp", "requests")),
    "a date as a number beside the time of day": (
        _lines([f"{d},{t}" for d, t in zip(MINUTES.strftime("%Y%m%d"), MINUTES.strftime("%H:%M"))],
               header="date,time,n"), ("time", "n")),
    "spreadsheet export (byte-order mark, CRLF)": (
        "\ufeff" + _lines(MINUTES.strftime("%Y-%m-%d %H:%M")).replace("\n", "\r\n"), ("timestamp", "requests")),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_common_export_format_reads_as_the_same_demand(tmp_path, name):
    text, columns = FORMATS[name]
    path = tmp_path / "trace.csv"
    path.write_text(text)
    trace = load_trace(path)
    assert trace.start == START and trace.step_minutes == 1 and trace.missing_minutes == 0
    # Named as in the file, which --timestamp-column and --count-column take.
    assert (trace.timestamp_column, trace.count_column) == columns
    np.testing.assert_array_equal(trace.requests, DEMAND)


REFUSED = {
    # Numbers that are not Unix times used to be read as nanoseconds since 1970: the whole
    # trace fell into its first minute and the backtest ran on one minute of demand.
    "a minute index": ("timestamp,requests\n" + "".join(f"{m},{v:g}\n" for m, v in enumerate(DEMAND)),
                       r"not Unix times .* ISO 8601 .* --timestamp-column"),
    "a 0 placeholder among Unix seconds": (_lines([0, *_unix("s")[1:]]), r"data row 1 holds 0, which is not one"),
    "one value in milliseconds among seconds": (_lines([*_unix("s")[:9], _unix("ms")[9], *_unix("s")[10:]]),
                                                r"data row 10 holds .* not one \(a placeholder, or another unit"),
    "negative Unix times": (_lines(-_unix("s")), r"data row 1 holds -1\.70925e\+09, which is not one"),
    # With no day over 12, 01/03/2024 is 1 March or 3 January: refused, not guessed.
    "dates that may be day-first or month-first": (_lines(MINUTES.strftime("%d/%m/%Y %H:%M")),
                                                   r"'01/03/2024 00:00', \.\.\.\) may be day-first or month-first"),
    "times of day without a date": ("Time,Requests\n" + "".join(f"{t},5\n" for t in MINUTES.strftime("%H:%M")),
                                    r"times of day without a date"),
    "a repeated header": ("timestamp,requests\n" + "\n".join(_lines(_unix("s")).splitlines()[1:4]) + "\n"
                          + _lines(_unix("s")), r"data row 4 holds 'timestamp' \(a repeated header"),
    "a 1900 placeholder date": (_lines(["1900-01-01T00:00:00Z", *ISO[1:]]), r"124 years: a placeholder"),
    # Byte counts pass for Unix seconds: a failing timestamp column must not be replaced by them.
    "an n/a timestamp beside byte counts": (
        "timestamp,bytes,requests\n" + "".join(f"{'n/a' if d == 9 else f'2024-03-{d:02d}T00:00:00Z'},"
                                               f"{2_000_000_000 + d},5\n" for d in range(1, 15)),
        r"an empty \(or n/a\) timestamp in column 'timestamp' \(data row 9\)"),
    "an empty timestamp": ("timestamp,requests\n2024-03-01T00:00:00Z,5\n,5\n",
                           r"an empty \(or n/a\) timestamp in column 'timestamp' \(data row 2\)"),
    # 1,041 beside 950: a thousands separator (1041) or a decimal comma (1.041)? Not guessed.
    "counts with thousands separators": (
        "timestamp;requests\n" + "".join(f"{t};{int(v):,}\n" for t, v in zip(ISO, DEMAND)),
        r"holds '1,000' in data row 1: a thousands separator or a decimal comma"),
    "a time of day that is none": ("date,time,requests\n2024-03-01,00:00,5\n2024-03-01,25:99,5\n",
                                   r"time '25:99' \(columns 'date' and 'time', data row 2\)"),
    "one column": ("requests\n" + "".join(f"{v:g}\n" for v in DEMAND), r"one column \('requests'\)"),
    "timestamps a millisecond apart": (_lines(_unix("ms") // 60000 + 1_709_251_200_000), r"less than a second apart"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_cannot_be_one_time_per_row_is_refused_with_the_row_and_the_fix(tmp_path, name):
    text, message = REFUSED[name]
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_the_timestamp_and_request_columns_are_found_among_others(tmp_path):
    path = tmp_path / "trace.csv"
    frame = pd.DataFrame({"response_time_ms": 120.0, "timestamp": ISO, "error_rate": 0.01, "requests": DEMAND})
    frame.to_csv(path, index=False)
    trace = load_trace(path)
    assert (trace.timestamp_column, trace.count_column) == ("timestamp", "requests")
    np.testing.assert_array_equal(trace.requests, DEMAND)
    # A name that mentions time but holds no timestamps does not hide the column that does.
    pd.DataFrame({"t": ISO, "requests": DEMAND, "p95_response_time": 180.0}).to_csv(path, index=False)
    assert load_trace(path).timestamp_column == "t"
    # A count column with a placeholder is still the count (the placeholder a missing minute),
    # not the next numeric column.
    counts = DEMAND.astype(object)
    counts[5] = "-"
    pd.DataFrame({"timestamp": ISO, "requests": counts, "latency_ms": 180.0}).to_csv(path, index=False)
    trace = load_trace(path)
    assert trace.count_column == "requests" and trace.missing_minutes == 1 and trace.requests[5] == 0


def test_what_spreadsheets_write_reads_as_meant(tmp_path):
    path = tmp_path / "trace.csv"
    # A day over 12 in first place shows the dates are day-first; one in second place, month-first.
    path.write_text("timestamp,requests\n12/03/2024 00:00,5\n13/03/2024 00:00,6\n")
    assert load_trace(path).start == pd.Timestamp("2024-03-12", tz="UTC")
    path.write_text("timestamp,requests\n03/12/2024 00:00,5\n03/13/2024 00:00,6\n")
    assert load_trace(path).start == pd.Timestamp("2024-03-12", tz="UTC")
    # An Excel error cell in a column of decimal commas: that minute is missing, the rest read.
    path.write_text("Zeit;Anfragen\n" + "".join(f"2024-03-01 00:{m:02d};{'#DIV/0!' if m == 1 else f'{m},5'}\n"
                                                 for m in range(10)))
    trace = load_trace(path)
    np.testing.assert_array_equal(trace.requests, [0.5, 0, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5])
    assert trace.count_column == "Anfragen" and trace.missing_minutes == 1
    # German Excel: thousands points and decimal commas; LibreOffice: commas, quoted decimal commas.
    path.write_text("Zeit;Anfragen\n01.03.2024 00:00;1.200,5\n01.03.2024 00:01;1.300,5\n01.03.2024 00:02;999,5\n")
    np.testing.assert_array_equal(load_trace(path).requests, [1200.5, 1300.5, 999.5])
    path.write_text('Zeit,Wert\n01.03.2024 00:00,"0,5"\n01.03.2024 00:01,"1,25"\n01.03.2024 00:02,"0,100"\n')
    np.testing.assert_array_equal(load_trace(path).requests, [0.5, 1.25, 0.1])
    # A 12-hour clock goes with month-first dates; a web server log's own format; a Grafana
    # export whose first series has no samples.
    path.write_text("Time,Requests\n3/1/2024 11:59 PM,5\n3/2/2024 12:00 AM,6\n")
    assert load_trace(path).start == pd.Timestamp("2024-03-01 23:59", tz="UTC")
    path.write_text("minute,requests\n01/Mar/2024:00:00:00 +0000,5\n01/Mar/2024:00:01:00 +0000,6\n")
    np.testing.assert_array_equal(load_trace(path).requests, [5, 6])
    path.write_text('"Time","{job=""a""}","{job=""b""}"\n"2024-03-01 00:00:00",,5\n"2024-03-01 00:01:00",,6\n')
    assert load_trace(path).count_column == '{job="b"}'
    # "null" in the second row of a file without a header: still no header.
    path.write_text("2024-03-01T00:00:00Z,5\n2024-03-01T00:01:00Z,null\n2024-03-01T00:02:00Z,7\n")
    trace = load_trace(path)
    np.testing.assert_array_equal(trace.requests, [5, 0, 7])
    assert trace.timestamp_column == "column 1"


def test_what_the_fourth_review_found_reads_as_meant(tmp_path):
    path = tmp_path / "trace.csv"
    # Decimal commas: an address or a dotted date beside them stays what it is.
    path.write_text("Zeit;Host;Anfragen\n2024-03-01 00:00;10.0.0.1;10,5\n2024-03-01 00:01;10.0.0.2;11,5\n")
    trace = load_trace(path)
    assert trace.count_column == "Anfragen" and list(trace.requests) == [10.5, 11.5]
    path.write_text("Datum;Uhrzeit;Anfragen\n01.03.2024;00:00;10,5\n01.03.2024;00:01;11,5\n")
    trace = load_trace(path)
    assert trace.start == START and list(trace.requests) == [10.5, 11.5]
    # Without a header, 1.234,5 is a number: the first row is data.
    path.write_text("2024-03-01 00:00;1.234,5\n2024-03-01 00:01;1.235,5\n")
    assert load_trace(path).start == START and list(load_trace(path).requests) == [1234.5, 1235.5]
    # R's write.table: a header one field short, each row led by its row name.
    path.write_text('"timestamp","requests"\n"1","2024-03-01 00:00",987\n"2","2024-03-01 00:01",990\n')
    assert list(load_trace(path).requests) == [987, 990]
    # Daily samples beside an hh:mm value stay daily.
    path.write_text("date,requests,peak_time\n2024-03-01,1099,11:45\n2024-03-02,994,16:00\n2024-03-03,990,09:30\n")
    trace = load_trace(path)
    assert trace.timestamp_column == "date" and trace.step_minutes == 1440
    # A day over 12 with a 12-hour clock: day-first.
    path.write_text("timestamp,requests\n12/03/2024 1:00 PM,5\n13/03/2024 1:00 PM,6\n")
    assert load_trace(path).start == pd.Timestamp("2024-03-12 13:00", tz="UTC")
    # A date and time of day with one time missing: refused with its row, no traceback.
    path.write_text("date,time,requests\n2024-03-01,00:00,5\n2024-03-01,,6\n2024-03-01,00:02,7\n")
    with pytest.raises(TraceError, match=r"data row 2"):
        load_trace(path)


def test_date_order_tells_what_the_dates_cannot(tmp_path, capsys):
    path = tmp_path / "trace.csv"
    path.write_text(_lines(MINUTES.strftime("%d/%m/%Y %H:%M")))  # 01/03/2024: no day over 12
    with pytest.raises(TraceError, match="--date-order dmy"):
        load_trace(path)
    assert load_trace(path, date_order="dmy").start == START
    assert load_trace(path, date_order="mdy").start == pd.Timestamp("2024-01-03", tz="UTC")
    assert main(["detect", str(path), "-o", str(tmp_path / "out.csv"), "--date-order", "dmy"]) == 0
    assert pd.read_csv(tmp_path / "out.csv")["timestamp"].iloc[0] == "01/03/2024 00:00"
    assert main(["backtest", str(path), "--date-order", "dmy", "--peak-instances", "5",
                 "--out", str(tmp_path / "bt")]) == 0
    assert json.loads((tmp_path / "bt" / "summary.json").read_text())["trace"]["first_minute"].startswith("2024-03-01")


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


def test_counts_with_thousands_separated_by_points_are_refused_not_read_a_thousandth(tmp_path):
    # German spreadsheets write 1200 as 1.200. Beside 980, or in a file with decimal commas
    # elsewhere, it cannot be told from 1.2; it was read as 1.2 (1.35, 980: silently).
    path = tmp_path / "trace.csv"
    for text in ("Zeit;Anfragen\n2024-03-01 00:00;980\n2024-03-01 00:01;1.200\n2024-03-01 00:02;1.350\n",
                 "Zeit,Anfragen,Latenz\n2024-03-01 00:00,1.200,\"10,5\"\n2024-03-01 00:01,980,\"9,5\"\n",
                 "Zeit;Anfragen;Latenz\n2024-03-01 00:00;1.200;10,5\n2024-03-01 00:01;980;9,5\n"):
        path.write_text(text)
        with pytest.raises(TraceError, match=r"'Anfragen' holds '1.200' in data row \d.*1200 with a thousands "
                                             r"separator, or 1.2\? Export the numbers without thousands separators"):
            load_trace(path)
    path.write_text("ts;requests;shards\n2024-03-01 00:00;12.500;1,2\n2024-03-01 00:01;13.250;3,4\n")
    with pytest.raises(TraceError, match="'12.500' in data row 1, in a file with decimal commas elsewhere"):
        load_trace(path)
    path.write_text("Zeit;n\n2024-03-01 00:00;1.200.000\n2024-03-01 00:01;980\n")
    with pytest.raises(TraceError, match=r"'1.200.000' in data row 1, a number written with thousands separators "
                                         r"\(1200000\)"):
        load_trace(path)
    # Where the decimal mark is the comma, 1.200.000 can only be thousands: read.
    path.write_text("2024-03-01 00:00;980;10,5\n2024-03-01 00:01;1.200.000;9,5\n2024-03-01 00:02;990;9,5\n")
    trace = load_trace(path)
    assert trace.count_column == "column 2" and list(trace.requests) == [980, 1_200_000, 990]
    # Decimals alone, and addresses, are what they were.
    path.write_text("ts,requests\n2024-03-01 00:00,12.500\n2024-03-01 00:01,13.250\n")
    assert list(load_trace(path).requests) == [12.5, 13.25]
    path.write_text("Zeit;Quelle;n\n2024-03-01 00:00;192.168.178.100;10\n2024-03-01 00:01;192.168.178.101;11\n")
    assert load_trace(path).count_column == "n"
    path.write_text("Zeit;Quelle;Anfragen\n2024-03-01 00:00;192.168.178.100;10,5\n2024-03-01 00:01;192.168.178.101;11,5\n")
    assert list(load_trace(path).requests) == [10.5, 11.5]


def test_what_the_review_of_the_thousands_refusal_found(tmp_path):
    path = tmp_path / "trace.csv"
    refused = r"holds '1.[23]00(.000)?' in data row 2, .*Export the numbers without thousands separators"
    # A float column elsewhere, a placeholder among the counts, or the count named but not the
    # first numeric column: each used to let 1.200.000 or 1.200 through as 0 or 1.2, silently.
    for text in ("timestamp,requests,latency\nT0,980,1.125\nT1,1.200.000,1.250\nT2,1000,12.5\n",
                 "timestamp,requests\nT0,980\nT1,1.200\nT2,-\nT3,1.350\n",
                 "timestamp,requests\nT0,980\nT1,1.200.000\nT2,#DIV/0!\nT3,1000\n",
                 "timestamp,latency_ms,requests\nT0,12,1\nT1,15,1.300.000\nT2,11,1.250.000\n"):
        path.write_text(text.replace("T0", "2024-03-01T00:00:00Z").replace("T1", "2024-03-01T00:01:00Z")
                        .replace("T2", "2024-03-01T00:02:00Z").replace("T3", "2024-03-01T00:03:00Z"))
        with pytest.raises(TraceError, match=refused):
            load_trace(path)
    # US thousands commas show the decimal mark is the point; a decimal point elsewhere in the
    # column shows its points are decimal points; an address in a headerless file's first row is
    # no number (the row is data, not a header).
    path.write_text('timestamp,value,bytes\n2024-03-01T00:00:00Z,12.125,"12,345"\n2024-03-01T00:01:00Z,15.5,"1,980"\n')
    assert list(load_trace(path).requests) == [12.125, 15.5]
    path.write_text("timestamp,requests\n2024-03-01T00:00:00Z,980\n2024-03-01T00:01:00Z,1.200\n"
                    "2024-03-01T00:02:00Z,12.5\n")
    assert list(load_trace(path).requests) == [980, 1.2, 12.5]
    path.write_text("2024-03-01T00:00:00Z,192.168.178.100,5\n2024-03-01T00:01:00Z,10.0.0.1,6\n"
                    "2024-03-01T00:02:00Z,10.0.0.2,7\n")
    trace = load_trace(path)
    assert trace.count_column == "column 3" and list(trace.requests) == [5, 6, 7]


def test_what_the_second_review_of_the_thousands_refusal_found(tmp_path):
    path = tmp_path / "trace.csv"
    stamps = pd.date_range("2024-03-01", periods=2600, freq="min", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")

    def write(header, rows):
        path.write_text(header + "\n" + "".join(f"{t},{r}\n" for t, r in zip(stamps, rows)))

    # Round thousands (1.000 read as 1), an inf among the counts, and a long empty or
    # placeholder start before the first 1.200: each was read without a word.
    for rows, cell in ((["980", "1.000", "995", "2.000"], "1.000"), (["980", "1.200", "inf", "1.350"], "1.200"),
                       ([""] * 1001 + ["1.200.000" if k % 10 == 9 else "980" for k in range(1599)], "1.200.000"),
                       (["-"] * 1001 + ["1.200" if k % 2 else "980" for k in range(1599)], "1.200")):
        write("timestamp,requests", rows)
        with pytest.raises(TraceError, match=f"holds '{cell}' in data row"):
            load_trace(path)
    # A thousands-separated column before the count: refused with the way to name the count
    # (passed over, a German latency column beside such counts became the count, silently).
    write("timestamp,bytes_sent,rps", ["1.200.000,12", "950.000,15", "2.100.000,18"])
    with pytest.raises(TraceError, match="'bytes_sent' holds '1.200.000'.*if the count is another column, name it "
                                         "with --count-column"):
        load_trace(path)
    trace = load_trace(path, count_col="rps")
    assert trace.count_column == "rps" and list(trace.requests) == [12, 15, 18]
