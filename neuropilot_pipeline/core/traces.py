"""Demand traces as users export them: a CSV of request counts per sample, read into requests per minute.

Timestamps may be ISO 8601 in any UTC offset, Unix times (s, ms, us or ns, told apart by
magnitude and checked row by row) or compact YYYYMMDDHHMM[SS] numbers; a date and a time of
day may sit in two columns. The separator may be a comma, semicolon, tab or pipe, the header
may be missing. What cannot be read as one point in time per row is refused with the row and
what to give instead: a silently misread trace gives a backtest of the wrong demand.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class TraceError(ValueError):
    pass


@dataclass
class Trace:
    start: pd.Timestamp
    requests: np.ndarray  # per minute
    missing_minutes: int
    step_minutes: float
    timestamp_column: str = "timestamp"
    count_column: str = "requests"


# Column names a trace's timestamp and count are looked for under, in this order. Failing
# those, the timestamp is the first column whose name mentions a time or date and whose values
# parse, then any column whose values parse; the count the first numeric column.
TIMESTAMP_NAMES = ("timestamp", "timestamp_utc", "time", "ts", "datetime", "date")
COUNT_NAMES = ("requests", "request_count", "count", "value", "hits", "calls", "invocations")
SEPARATORS = (",", ";", "\t", "|")  # on a tie, the earlier wins
# Unix times by magnitude: 1e8 s is 1973, 1e11 s the year 5138.
EPOCH_UNITS = (("s", 1e8, 1e11), ("ms", 1e11, 1e14), ("us", 1e14, 1e17), ("ns", 1e17, 9.2e18))  # int64's limit
MAX_SPAN_DAYS = 3660  # ten years of minutes; a longer span is a placeholder or a misread unit
DAY_FIRST = re.compile(r"^\s*\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")  # 13/03/2024, 13.03.24
TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")
FIX = ("Give ISO 8601 timestamps such as 2026-01-01T00:00:00Z or Unix times, or name the timestamp column "
       "with --timestamp-column.")


def _sample_lines(path: str | Path, limit: int = 50) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = []
        for line in f:
            if line.strip():
                lines.append(line.rstrip("\r\n"))
            if len(lines) >= limit:
                break
    return lines


def _dialect(lines: list[str]) -> tuple[str, int]:
    """(separator, lines to skip): the separator that splits every sampled line into the same
    number of fields (quotes respected), the most fields winning; Excel's `sep=;` line is obeyed."""
    if lines and re.fullmatch(r"sep=.", lines[0]):
        return lines[0][4], 1
    best, best_fields = ",", 1
    for sep in SEPARATORS:
        fields = {len(row) for row in csv.reader(lines, delimiter=sep)}
        if len(fields) == 1 and (n := fields.pop()) > best_fields:
            best, best_fields = sep, n
    return best, 0


def _kind(text: str) -> str:
    text = text.strip()
    if not text:
        return "empty"
    try:
        float(text)
        return "number"
    except ValueError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
        return "text" if pd.isna(pd.to_datetime(text, utc=True, errors="coerce")) else "time"


def _first_row_is_data(lines: list[str], sep: str, skip: int) -> bool:
    """A first row of the same kinds (timestamp, number, text) as the second, led by a
    timestamp or number, is data: the file has no header."""
    rows = list(csv.reader(lines[skip:skip + 2], delimiter=sep))
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        return False
    first, second = [_kind(x) for x in rows[0]], [_kind(x) for x in rows[1]]
    if first[0] == "number" == second[0] and _digits(rows[0][0]) != _digits(rows[1][0]):
        return False  # "0" over Unix times is pandas' name for an unnamed column
    return first[0] in ("time", "number") and all(a == b or "empty" in (a, b) for a, b in zip(first, second))


def _digits(number: str) -> int:
    return len(str(int(abs(float(number)))))


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV as users export them: comma, semicolon, tab or pipe (Excel's `sep=` line obeyed),
    with or without a header (headerless columns are named "column 1", "column 2", ...)."""
    lines = _sample_lines(path)
    if not lines:
        raise TraceError(f"{path} has no rows")
    sep, skip = _dialect(lines)
    if _first_row_is_data(lines, sep, skip):
        df = pd.read_csv(path, sep=sep, skiprows=skip, header=None)
        df.columns = [f"column {i + 1}" for i in range(df.shape[1])]  # named as --timestamp-column takes them
    else:
        df = pd.read_csv(path, sep=sep, skiprows=skip)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _epoch(numbers: np.ndarray, path: str | Path, column: str) -> pd.Series:
    if not np.isfinite(numbers).all():
        row = int(np.argmin(np.isfinite(numbers)))
        raise TraceError(f"{path}: column {column!r} has an empty or non-finite timestamp in data row {row + 1}")
    whole = numbers == np.round(numbers)
    if whole.all():
        # Compact date-times (202403010000 or 20240301000000) before Unix times: 12 digits are
        # also Unix milliseconds of 1973-2001, but such numbers rarely all make valid dates.
        digits = {len(str(int(v))) for v in numbers}
        if digits in ({12}, {14}):
            fmt = "%Y%m%d%H%M" if digits == {12} else "%Y%m%d%H%M%S"
            ts = pd.to_datetime(pd.Series(numbers.astype(np.int64).astype(str)), format=fmt, utc=True,
                                errors="coerce")
            if ts.notna().all():
                return ts
    magnitude = float(np.median(np.abs(numbers)))
    unit, lo, hi = next((u for u in EPOCH_UNITS if u[1] <= magnitude < u[2]), (None, 0.0, 0.0))
    if unit is None:
        raise TraceError(f"{path}: column {column!r} holds numbers ({numbers[0]:g}, ...) that are not Unix times "
                         f"(seconds, milliseconds, microseconds or nanoseconds since 1970, from 1973 on). {FIX}")
    outside = (numbers < lo) | (numbers >= hi)
    if outside.any():
        row = int(np.argmax(outside))
        raise TraceError(f"{path}: column {column!r} holds Unix times in {unit}, but data row {row + 1} holds "
                         f"{numbers[row]:g}, which is not one (a placeholder, or another unit?). {FIX}")
    return pd.Series(pd.to_datetime(numbers.astype(np.int64) if whole.all() else numbers, unit=unit, utc=True))


def parse_timestamps(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    """One point in time per row of `df[column]`, in row order, or TraceError naming the row and
    what to give instead. Shared with `neuropilot detect`."""
    values = df[column]
    if values.dtype.kind == "M":
        return pd.to_datetime(values, utc=True)
    if pd.api.types.is_bool_dtype(values):
        raise TraceError(f"{path}: column {column!r} holds true/false, not timestamps. {FIX}")
    if pd.api.types.is_numeric_dtype(values):
        return _epoch(values.to_numpy(dtype=float), path, column)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return _epoch(numbers.to_numpy(dtype=float), path, column)
    if numbers.notna().mean() >= 0.5:  # numbers with stray words: name the first
        row = int(np.argmax(numbers.isna().to_numpy()))
        raise TraceError(f"{path}: column {column!r} holds numbers, but data row {row + 1} holds "
                         f"{values.iloc[row]!r} (a repeated header or a placeholder?). {FIX}")
    if len(values) and TIME_OF_DAY.match(str(values.iloc[0])) \
            and values.astype(str).map(lambda s: bool(TIME_OF_DAY.match(s))).all():
        return _date_and_time(df, column, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": a failure is caught below
        ts = pd.to_datetime(values, utc=True, errors="coerce")  # in the format of the first row
        if not ts.isna().any():
            return ts
        iso = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")  # precision varying by row
    if not iso.isna().any():
        return iso
    row = int(np.argmax(ts.isna().to_numpy()))
    how = f"in the format of the first row ({values.iloc[0]!r})" if row else "as a date and time"
    if DAY_FIRST.match(str(values.iloc[row])):
        how += "; a day-first date is ambiguous"
    raise TraceError(f"{path}: timestamp {values.iloc[row]!r} in column {column!r} (data row {row + 1}) cannot be "
                     f"parsed {how}. {FIX}")


def _date_and_time(df: pd.DataFrame, column: str, path: str | Path) -> pd.Series:
    """A time-of-day column is only a timestamp together with a date column beside it."""
    for other in df.columns:
        if other != column and ("date" in str(other).lower() or str(other).lower() == "day"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ts = pd.to_datetime(df[other].astype(str) + " " + df[column].astype(str), utc=True, errors="coerce")
            if ts.notna().all():
                return ts
    raise TraceError(f"{path}: column {column!r} holds times of day without a date, and no date column beside it "
                     f"parses. {FIX}")


def _require_column(df: pd.DataFrame, path: str | Path, column: str, what: str) -> str:
    if column not in df.columns:
        raise TraceError(f"{path}: no {what} column {column!r}; it has {list(df.columns)} (use --{what}-column)")
    return column


def find_timestamps(df: pd.DataFrame, path: str | Path, given: str | None) -> tuple[str, pd.Series]:
    """The timestamp column (`given`, else the first by name, then by a name mentioning a time
    or date, then any column, whose values parse) and its parsed timestamps."""
    if given:
        return given, parse_timestamps(df, _require_column(df, path, given, "timestamp"), path)
    lower = {str(c).lower(): c for c in df.columns}
    named = [lower[n] for n in TIMESTAMP_NAMES if n in lower]
    mentioned = [c for c in df.columns if any(k in str(c).lower() for k in ("time", "date")) and c not in named]
    tried = named + mentioned + [c for c in df.columns if c not in named and c not in mentioned]
    failure = None
    for column in tried:
        try:
            return column, parse_timestamps(df, column, path)
        except TraceError as exc:  # e.g. response_time_ms before the timestamp: try the next
            failure = failure or exc
    raise failure


def _find_counts(df: pd.DataFrame, path: str | Path, tcol: str, given: str | None) -> tuple[str, np.ndarray]:
    if given:
        column = _require_column(df, path, given, "count")
    else:
        others = [c for c in df.columns if c != tcol and not pd.api.types.is_bool_dtype(df[c])]
        # A column named like a count qualifies with a few placeholders ("-", "n/a") among its
        # numbers; any other must be numeric throughout.
        by_name = [c for n in COUNT_NAMES for c in others
                   if str(c).lower() == n and pd.to_numeric(df[c], errors="coerce").notna().mean() >= 0.5]
        plain = [c for c in others if pd.api.types.is_numeric_dtype(df[c])]
        column = (by_name or plain or [None])[0]
        if column is None:
            raise TraceError(f"{path}: no numeric count column among {list(df.columns)} besides the timestamp "
                             f"{tcol!r} (name one with --count-column)")
    counts = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(counts).any():
        raise TraceError(f"{path}: count column {column!r} holds no numbers (first value {df[column].iloc[0]!r})")
    return column, counts


def load_trace(path: str | Path, timestamp_col: str | None = None, count_col: str | None = None) -> Trace:
    """Requests per minute from a CSV of request counts per sample; a coarser step is spread
    evenly over its minutes, finer ones are summed per minute. Missing samples and empty or
    non-numeric counts are zero demand, and counted as missing minutes."""
    df = read_table(path)
    if df.empty:
        raise TraceError(f"{path} has no rows")
    if df.shape[1] < 2:
        raise TraceError(f"{path}: one column ({df.columns[0]!r}); a trace needs a timestamp column and a count "
                         "column, separated by a comma, semicolon, tab or pipe")
    tcol, ts = find_timestamps(df, path, timestamp_col)
    ccol, counts = _find_counts(df, path, tcol, count_col)
    order = np.argsort(ts.to_numpy(), kind="stable")
    ts, counts = ts.iloc[order].reset_index(drop=True), counts[order]
    span_days = (ts.iloc[-1] - ts.iloc[0]) / pd.Timedelta(days=1)
    if span_days > MAX_SPAN_DAYS:
        raise TraceError(f"{path}: the timestamps in column {tcol!r} run from {ts.iloc[0]} to {ts.iloc[-1]}, "
                         f"{span_days / 365.25:.0f} years: a placeholder or a misread unit? {FIX}")
    gaps = np.diff(ts.to_numpy()).astype("timedelta64[ms]").astype(float) / 1000.0
    distinct = gaps[gaps > 0]  # several rows may share a timestamp (one per endpoint, say): summed
    if len(distinct) >= 10 and np.median(distinct) < 1.0:
        raise TraceError(f"{path}: the timestamps in column {tcol!r} lie mostly less than a second apart "
                         f"({ts.iloc[0]}, {ts.iloc[1]}, ...): not the samples of a demand series (a misread unit?). "
                         f"{FIX}")
    minutes = np.round(gaps / 60.0)
    minutes = minutes[minutes > 0]
    # The sampling step is the most common gap (the smallest on a tie): gaps are missing data.
    values, occurrences = np.unique(minutes, return_counts=True) if len(minutes) else (np.array([1.0]), np.array([1]))
    step = max(1.0, float(values[np.argmax(occurrences)]))
    start = ts.iloc[0].floor("min")
    offsets = ((ts - start) / pd.Timedelta(minutes=1)).to_numpy().astype(int)
    n = int(offsets[-1] + step)
    # An empty or non-numeric count is a missing sample: no demand, and its minutes count as missing.
    known = np.isfinite(counts)
    offsets, counts = offsets[known], np.clip(counts[known], 0.0, None)
    per_minute = np.zeros(n)
    covered = np.zeros(n, dtype=bool)
    for k in range(int(step)):
        idx = offsets + k
        idx = idx[idx < n]
        np.add.at(per_minute, idx, counts[: len(idx)] / step)
        covered[idx] = True
    return Trace(start, per_minute, int((~covered).sum()), step, str(tcol), str(ccol))
