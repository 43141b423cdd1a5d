"""Demand traces as users export them: a CSV of request counts per sample, read into requests per minute.

Timestamps may be ISO 8601 in any UTC offset, Unix times (s, ms, us or ns, told apart by
magnitude and checked row by row) or compact YYYYMMDDHHMM[SS] numbers; a date and a time of
day may sit in two columns. The separator may be a comma, semicolon, tab or pipe (with decimal
commas where it is not a comma), the header may be missing. `neuropilot detect` reads its
input with the same functions. What cannot be read as one point in time per row is refused
with the row and what to give instead: a silently misread trace gives a backtest of the wrong
demand.
"""

from __future__ import annotations

import csv
import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
TIME_OF_DAY = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(\s*[AaPp]\.?[Mm]\.?)?\s*$")
DECIMAL_COMMA = re.compile(r"^\s*-?(\d+|\d{1,3}(\.\d{3})+),\d+\s*$")  # 10,04 or 1.200,5: a European number
NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{2}|\d{4})(?!\d)")  # 01.03.2026, 03/01/26
AM_PM = re.compile(r"\d\s*[AaPp]\.?[Mm]\.?\s*$")  # 3/1/2026 1:00 AM: written month-first
CLF_FORMATS = ("%d/%b/%Y:%H:%M:%S %z", "%d/%b/%Y:%H:%M:%S", "%d/%b/%Y:%H:%M")  # web server logs: 01/Mar/2026:00:00:00
MISSING = {"null", "n/a", "na", "nan", "none", "-", "#n/a", "#nv", "#value!", "#div/0!"}  # as an empty cell
DECIMAL_POINT = re.compile(r"^\s*-?\d+\.\d+\s*$")
THOUSANDS = re.compile(r"^\s*-?[1-9]\d{0,2},\d{3}\s*$")  # 1,041: a thousands separator, or 1.041 with a decimal comma?
# 1.200 or 1.200.000: thousands separated by points, as German spreadsheets write 1200 (or 1.2?).
DOTTED_THOUSANDS = re.compile(r"^\s*-?[1-9]\d{0,2}(\.\d{3})+\s*$")
WHOLE_NUMBER = re.compile(r"^\s*-?\d+\s*$")
IPV4 = re.compile(r"^\s*((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)\s*$")  # 192.168.178.100 is no number
FIX = ("Give ISO 8601 timestamps such as 2026-01-01T00:00:00Z or Unix times, or name the timestamp column "
       "with --timestamp-column.")
DATE_ORDERS = ("dmy", "mdy")  # --date-order: 01/03/2026 is 1 March (dmy) or 3 January (mdy)


def matches(cells: pd.Series, pattern: re.Pattern) -> pd.Series:
    """cells.str.match(pattern), by Arrow's regex engine: pandas matches strings one by one in
    Python, six times slower, and every float column of a file may be checked (_dotted_thousands)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.match_substring_regex(pa.Array.from_pandas(cells.astype(str)), pattern.pattern)
    return pd.Series(found.fill_null(False).to_numpy(zero_copy_only=False), index=cells.index)


def dotted_thousands(cells: pd.Series) -> pd.Series:
    """Which cells (stripped text) are numbers with thousands separated by points: 1.200, 1.200.000."""
    return matches(cells, DOTTED_THOUSANDS) & ~matches(cells, IPV4)


def _sample_lines(path: str | Path, limit: int = 1000) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        lines = []
        for line in f:
            if line.strip():
                lines.append(line.rstrip("\r\n"))
            if len(lines) >= limit:
                break
    return lines


def _dialect(lines: list[str]) -> tuple[str, int, str]:
    """(separator, lines to skip, decimal mark): the separator that splits every sampled line
    into the same number of fields (quotes respected), the most fields winning, the earlier on
    a tie; Excel's `sep=;` line is obeyed. Numbers like 10,04 in a file not separated by commas
    have decimal commas (and "2026-03-01;10,04" splits into two fields on either: a semicolon file)."""
    skip = 0
    if lines and re.fullmatch(r"sep=.", lines[0]):
        sep, skip = lines[0][4], 1
    else:
        fields = {}
        for candidate in SEPARATORS:
            counts = {len(row) for row in csv.reader(lines, delimiter=candidate)}
            fields[candidate] = counts.pop() if len(counts) == 1 else 0
        sep = max(SEPARATORS, key=lambda c: (fields[c], -SEPARATORS.index(c)))
        sep = sep if fields[sep] > 1 else ","
        if sep == "," and fields[";"] == fields[","] and _has_decimal_commas(lines, ";"):
            sep = ";"
    decimal = "," if sep != "," and _has_decimal_commas(lines[skip:], sep) else "."
    return sep, skip, decimal


def _has_decimal_commas(lines: list[str], sep: str) -> bool:
    """Numbers with decimal commas, none with a decimal point, and not all of them shaped like
    1,041 (which may be a thousands separator): then, and only then, the file's decimal mark is
    a comma. Otherwise comma numbers stay words, and a value or count column of them is refused."""
    fields = [field for row in csv.reader(lines, delimiter=sep) for field in row]
    commas = [f for f in fields if DECIMAL_COMMA.match(f)]
    return bool(commas) and not any(DECIMAL_POINT.match(f) for f in fields) \
        and not all(THOUSANDS.match(f) for f in commas)


def _kind(text: str, decimal: str = ".") -> str:
    text = text.strip()
    if not text or text.lower() in MISSING:
        return "empty"
    if DOTTED_THOUSANDS.match(text) and not IPV4.match(text):  # 1.200.000 is a number, whatever it means
        return "number"
    try:
        float(text.replace(".", "").replace(",", ".") if decimal == "," and DECIMAL_COMMA.match(text) else text)
        return "number"
    except ValueError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
        return "text" if pd.isna(pd.to_datetime(text, utc=True, errors="coerce")) else "time"


def _first_row_is_data(rows: list[list[str]], decimal: str) -> bool:
    """A first row of the same kinds (timestamp, number, text) as the second, holding a
    timestamp or a number, is data: the file has no header. A first row of 0, 1, ... is pandas'
    names for unnamed columns."""
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        return False
    if not rows[0][0].strip() and rows[1][0].strip():
        return False  # an unnamed first column over values: pandas' index (",0" over "2026-03-01,5")
    if all(re.fullmatch(r"\s*\d+\s*", x) for x in rows[0]) \
            and [int(x) for x in rows[0]] in (list(range(len(rows[0]))), list(range(1, len(rows[0]) + 1))):
        return False
    first, second = [_kind(x, decimal) for x in rows[0]], [_kind(x, decimal) for x in rows[1]]
    return any(k in ("time", "number") for k in first) \
        and all(a == b or "empty" in (a, b) for a, b in zip(first, second))


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV as users export them: comma, semicolon, tab or pipe (Excel's `sep=` line obeyed),
    with or without a header (headerless columns are named "column 1", "column 2", ...)."""
    lines = _sample_lines(path)
    if not lines:
        raise TraceError(f"{path} has no rows")
    sep, skip, decimal = _dialect(lines)
    # No thousands="." for decimal-comma files: it would turn 10.0.0.1 and 01.03.2026 into numbers.
    # Text columns holding 1.200,5 are read by _as_numbers, field by field.
    rows = list(csv.reader(lines[skip:skip + 2], delimiter=sep))  # the first two, to tell a header
    r_layout = False
    if _first_row_is_data(rows, decimal):
        how = dict(sep=sep, skiprows=skip, header=None, decimal=decimal, index_col=False)
        df = pd.read_csv(path, **how)
        df.columns = [f"column {i + 1}" for i in range(df.shape[1])]  # named as --timestamp-column takes them
    else:
        # A separator ending every data row (not the header) is an empty last field: index_col=False
        # keeps the columns in place. A header one field short otherwise is R's write.table: the
        # first field of each row is its row name, which pandas takes as the index.
        header_short = len(rows) == 2 and len(rows[1]) == len(rows[0]) + 1
        trailing = header_short and not rows[1][-1].strip()
        r_layout = header_short and not trailing
        how = dict(sep=sep, skiprows=skip, decimal=decimal, index_col=False if trailing else None)
        df = pd.read_csv(path, **how)
    names, seen = [], set()
    for name in (str(c).strip() for c in df.columns):  # " value" beside "value" is a second column
        unique, k = name, 0
        while unique in seen:
            k += 1
            unique = f"{name}.{k}"
        names.append(unique)
        seen.add(unique)
    df.columns = names
    # Rows with every field empty (a spreadsheet's trailing ";;" lines) are no data, as blank lines are not.
    keep = df.notna().any(axis=1).to_numpy()
    df = df[keep].reset_index(drop=True)
    df.attrs["decimal"] = decimal  # for columns pandas left as text (an Excel error cell among the numbers)
    df.attrs["dotted_thousands"] = _dotted_thousands(df, path, how, lines, keep, r_layout)
    return df


def _dotted_thousands(df: pd.DataFrame, path: str | Path, how: dict[str, Any], lines: list[str],
                      keep: np.ndarray, r_layout: bool) -> dict[str, tuple[int, str, str]]:
    """Columns of numbers written with thousands separated by points, as German spreadsheets
    write 1200: {column: (row, that cell, why)}. Such a column is refused as a count or value
    (numbers_in), where it was read as 1.2 (or its 1.200.000 as a word): one holding a 1.200
    beside whole numbers (980 beside 1.200: counts, not 0.98 thousand) or in a file with decimal
    commas elsewhere, or a 1.200.000 (which only thousands can be). A decimal point elsewhere in
    the column (12.5, 0.125) shows the points are decimal points: not refused. Nor is a column
    of 12.500-style numbers alone. Empty and placeholder cells ("-", "#DIV/0!") and words are
    left out of the judgement."""
    if df.attrs["decimal"] == "," or df.empty:
        return {}  # a decimal-comma file has no decimal points (_has_decimal_commas); 1.200.000 is read there

    @functools.cache
    def comma_numbers() -> bool:  # asked only when it matters: the sample has 1000 lines
        return any(DECIMAL_COMMA.match(f) and not THOUSANDS.match(f)  # 1,041 is US thousands: a point file
                   for row in csv.reader(lines[how["skiprows"]:], delimiter=how["sep"]) for f in row)

    def judge(cells: pd.Series, found: dict) -> None:
        """cells: a column's text (stripped) in the rows a number may be written with points."""
        dotted = dotted_thousands(cells)
        if not dotted.any() or (matches(cells, DECIMAL_POINT) & ~dotted).any():
            return
        groups = cells[dotted].str.count(r"\.")
        whole = matches(cells, WHOLE_NUMBER)
        if not (groups.max() > 1 or whole.any() or comma_numbers()):
            return
        row = int(dotted.index[np.argmax(dotted.to_numpy())])
        cell = cells[row]
        if groups[row] > 1:
            why = f"a number written with thousands separators ({cell.replace('.', '')})."
        else:
            why = (f"beside whole numbers such as {cells[whole].iloc[0]!r}" if whole.any()
                   else "in a file with decimal commas elsewhere")
            why = f"{why}: {cell.replace('.', '')} with a thousands separator, or {float(cell):g}?"
        found[cells.name] = (row, cell, why)

    found: dict[str, tuple[int, str, str]] = {}
    for column in df.columns:  # text columns: 1.200.000, or a placeholder, kept pandas from reading numbers
        if df[column].dtype.kind in "fiubmM":
            continue
        cells = df[column].dropna()
        if not dotted_thousands(cells).any():
            continue  # words, dates or times, told apart by one pass of Arrow's regex engine
        cells = cells.astype(str).str.strip()
        judge(cells[(cells != "") & ~cells.str.lower().isin(MISSING)].rename(column), found)

    def could_be_dotted(values: pd.Series) -> bool:
        # 1.200 read as 1.2 and 1.000 as 1: fractional values of 1-999 with 1-3 decimals, and
        # whole ones (980, or 1.000) or decimal commas elsewhere; the text is checked below. A
        # column of measurements (more decimals, or nothing whole) is not read again.
        v = np.abs(values.to_numpy(dtype=float))
        v = v[np.isfinite(v)]
        fractional = v[v % 1 != 0]
        if len(fractional) == len(v) and not comma_numbers():
            return False
        return bool(((fractional >= 1) & (fractional < 1000)
                     & (np.abs(fractional * 1000 - np.round(fractional * 1000)) < 1e-6)).all()) and bool(
            len(fractional) or ((v >= 1) & (v < 1000)).any())

    floats = [i for i, c in enumerate(df.columns) if df[c].dtype.kind == "f" and could_be_dotted(df[c])]
    if not floats:
        return found
    # The same read as text: the same rows, the cells as written; only those columns, unless a
    # header one field short (R's write.table) shifts them against the file's fields.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.ParserWarning)  # the first read warned already, if at all
        text = pd.read_csv(path, **how, dtype=str, keep_default_na=False, usecols=None if r_layout else floats)
    if len(text) != len(keep) or text.shape[1] != (df.shape[1] if r_layout else len(floats)):
        return found
    text = text[keep].reset_index(drop=True)
    for k, i in enumerate(floats):
        column = df.columns[i]
        cells = text.iloc[:, i if r_layout else k]
        judge(cells[df[column].notna().to_numpy()].str.strip().rename(column), found)
    return found


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


def _timestamps(df: pd.DataFrame, column: str, path: str | Path) -> tuple[pd.Series, list[str]]:
    """One point in time per row of `df[column]`, in row order, or TraceError naming the row and
    what to give instead; and the columns read: `column`, and for times of day the date column beside it."""
    values = df[column]
    if values.dtype.kind == "M":
        return pd.to_datetime(values, utc=True), [column]
    if pd.api.types.is_bool_dtype(values):
        raise TraceError(f"{path}: column {column!r} holds true/false, not timestamps. {FIX}")
    if pd.api.types.is_numeric_dtype(values):
        return _epoch(values.to_numpy(dtype=float), path, column), [column]
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return _epoch(numbers.to_numpy(dtype=float), path, column), [column]
    if numbers.notna().mean() >= 0.5:  # numbers with stray words: name the first
        row = int(np.argmax(numbers.isna().to_numpy()))
        raise TraceError(f"{path}: column {column!r} holds numbers, but data row {row + 1} holds "
                         f"{values.iloc[row]!r} (a repeated header or a placeholder?). {FIX}")
    if len(values) and TIME_OF_DAY.match(str(values.iloc[0])) and _times_of_day(values):
        return _date_and_time(df, column, path)
    day_first = _day_first(values, path, column, df.attrs.get("date_order"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format": a failure is caught below
        # In the format of the first row (day-first where the dates show it).
        ts = pd.to_datetime(values, utc=True, errors="coerce", dayfirst=bool(day_first))
        if not ts.isna().any():
            return ts, [column]
        iso = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")  # precision varying by row
    if not iso.isna().any():
        return iso, [column]
    for fmt in CLF_FORMATS:
        clf = pd.to_datetime(values, utc=True, errors="coerce", format=fmt)
        if not clf.isna().any():
            return clf, [column]
    row = int(np.argmax(ts.isna().to_numpy()))
    how = f"in the format of the first row ({values.iloc[0]!r})" if row else "as a date and time"
    shown = "an empty (or n/a) timestamp" if pd.isna(values.iloc[row]) else f"timestamp {values.iloc[row]!r}"
    raise TraceError(f"{path}: {shown} in column {column!r} (data row {row + 1}) cannot be parsed {how}. {FIX}")


def _times_of_day(values: pd.Series) -> bool:
    """Every filled cell a time of day (00:05, 12:30 AM); an empty one is refused with its row later."""
    filled = values.dropna().astype(str)
    filled = filled[filled.str.strip() != ""]
    return bool(len(filled)) and bool(filled.str.match(TIME_OF_DAY.pattern).all())


def _day_first(values: pd.Series, path: str | Path, column: str, order: str | None = None) -> bool | None:
    """For dates written with the day and month as numbers: True if day-first, False if
    month-first, None if the column holds other timestamps (or dates no reading makes valid,
    refused by the parse that follows with their row). Dotted dates (01.03.2026) are day-first
    wherever they are written; with slashes or dashes the data must tell, by a first number over
    12 (a day: day-first) or a second one (month-first). If none is, the file cannot tell, and
    `order` ("dmy" or "mdy", --date-order) must. `order` overrides the evidence."""
    if not len(values) or not NUMERIC_DATE.match(str(values.iloc[0])):
        return None  # most files: ISO 8601, at no cost
    text = values.astype(str)
    parts = text.str.extract(NUMERIC_DATE.pattern)
    if parts[0].isna().any():
        return None
    if order in DATE_ORDERS:
        return order == "dmy"
    if (parts[1] == ".").all():
        return True
    first, second = parts[0].astype(int).max(), parts[2].astype(int).max()
    if first > 12 >= second:
        return True
    if second > 12 >= first:
        return False
    if first > 12 and second > 12:
        return None
    if text.str.contains(AM_PM.pattern).all():
        return False  # no day over 12, and a 12-hour clock: written month-first
    raise TraceError(f"{path}: the dates in column {column!r} ({values.iloc[0]!r}, ...) may be day-first or "
                     "month-first: no day in them is over 12, so nothing tells which. Say which with --date-order "
                     "dmy (day first) or mdy (month first), or give ISO 8601 timestamps such as 2026-01-01T00:00:00Z.")


def _date_and_time(df: pd.DataFrame, column: str, path: str | Path,
                   partners: list[str] | None = None) -> tuple[pd.Series, list[str]]:
    """A time-of-day column is only a timestamp together with a date column beside it: one named
    like a date (date, day, ...), else any column of dates (Datum, Fecha, ...)."""
    failed = None
    for other in partners if partners is not None else _date_columns(df, column):
        day_first = _day_first(df[other], path, other, df.attrs.get("date_order"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ts = pd.to_datetime(df[other].astype(str) + " " + df[column].astype(str), utc=True, errors="coerce",
                                dayfirst=bool(day_first))
        if ts.notna().all():
            return ts, [column, other]
        if failed is None and ts.notna().any():
            row = int(np.argmax(ts.isna().to_numpy()))
            failed = (f"{path}: date {df[other].iloc[row]!r} and time {df[column].iloc[row]!r} (columns {other!r} "
                      f"and {column!r}, data row {row + 1}) cannot be parsed together. {FIX}")
    raise TraceError(failed or f"{path}: column {column!r} holds times of day without a date, and no date column "
                               f"beside it parses. {FIX}")


def _date_columns(df: pd.DataFrame, column: str) -> list[str]:
    """The columns that may hold the dates of a time-of-day column: named like a date (date, day,
    ...), then any other whose first value is a date (Datum, Fecha, ...)."""
    named = [c for c in df.columns if c != column and ("date" in str(c).lower() or str(c).lower() == "day")]
    dated = []
    for c in df.columns:
        if c != column and c not in named and not pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any():
            first = str(df[c].dropna().iloc[0])
            if _kind(first) == "time" and not TIME_OF_DAY.match(first):
                dated.append(c)
    return named + dated


def _require_column(df: pd.DataFrame, path: str | Path, column: str, what: str) -> str:
    if column not in df.columns:
        raise TraceError(f"{path}: no {what} column {column!r}; it has {list(df.columns)} (use --{what}-column)")
    return column


def find_timestamps(df: pd.DataFrame, path: str | Path, given: str | None) -> tuple[str, pd.Series, list[str]]:
    """The timestamp column (`given`, else the first by name, then by a name mentioning a time
    or date, then any column, whose values parse), its timestamps, and every column they were
    read from (a time of day's date column too), which no value may be taken from.

    A column named as a timestamp, or one whose first value is a date, that fails to parse is
    refused with its row: trying on would take any column of numbers that pass for Unix times
    (byte counts of 1e8-1e11 do) as the timestamps. Numbers under a name that mentions a time
    (response_time_ms) and text that is no date are passed over."""
    if given is not None:
        ts, used = _timestamps(df, _require_column(df, path, given, "timestamp"), path)
        return given, ts, used
    lower = {str(c).lower(): c for c in df.columns}
    named = [lower[n] for n in TIMESTAMP_NAMES if n in lower]
    mentioned = [c for c in df.columns if any(k in str(c).lower() for k in ("time", "date")) and c not in named]
    tried = named + mentioned + [c for c in df.columns if c not in named and c not in mentioned]
    failure = None
    for column in tried:
        try:
            ts, used = _timestamps(df, column, path)
            return _with_time_of_day(df, path, column, ts, used)
        except TraceError as exc:
            first = df[column].dropna()
            dated = len(first) and not pd.api.types.is_numeric_dtype(first) and _kind(str(first.iloc[0])) == "time"
            if column in named or dated:
                raise
            failure = failure or exc
    raise failure


def _with_time_of_day(df: pd.DataFrame, path: str | Path, column: str, ts: pd.Series,
                      used: list[str]) -> tuple[str, pd.Series, list[str]]:
    """Dates alone (every one at midnight), each on several rows, beside a column of times of day:
    the two together. Dates each on one row are daily samples, and an hh:mm column beside them
    (a peak time, a duration) is a value, not their time."""
    if len(used) > 1 or len(ts) < 2 or not (ts == ts.dt.normalize()).all() or not ts.duplicated().any():
        return column, ts, used
    for other in df.columns:
        if other != column and not pd.api.types.is_numeric_dtype(df[other]) and _times_of_day(df[other]):
            both, used = _date_and_time(df, other, path, partners=[column])
            return other, both, used
    return column, ts, used


def find_numbers(df: pd.DataFrame, path: str | Path, timestamp_columns: list[str], given: str | None,
                 names: tuple[str, ...], what: str) -> tuple[str, np.ndarray]:
    """The `what` ("count" or "value") column and its numbers: `given` (--{what}-column), else the
    first column named as in `names` whose cells are mostly numbers (a few placeholders such as
    "-" or "n/a" among them), else the first numeric column; never a timestamp column."""
    if given is not None:
        column = _require_column(df, path, given, what)
        if column in timestamp_columns:
            raise TraceError(f"{path}: column {column!r} holds the timestamps; name the {what} column with "
                             f"--{what}-column")
        return column, numbers_in(df, column, path, what)
    others = [c for c in df.columns if c not in timestamp_columns and not pd.api.types.is_bool_dtype(df[c])]
    by_name = [c for n in names for c in others if str(c).strip().lower() == n and numberlike_share(df, c) >= 0.5]
    candidates = by_name or numeric_columns(df, others)
    if not candidates:
        for column in others:
            if numberlike_share(df, column) >= 0.5:  # numbers with commas: numbers_in says why they are refused
                numbers_in(df, column, path, what)
        raise TraceError(f"{path}: no numeric {what} column among {list(df.columns)} besides the timestamp "
                         f"{' and '.join(map(repr, timestamp_columns))} (name one with --{what}-column)")
    return candidates[0], numbers_in(df, candidates[0], path, what)


def require_two_columns(df: pd.DataFrame, path: str | Path, series: str, what: str) -> None:
    """A `series` ("trace", "series") needs rows, and a timestamp column beside its `what` column."""
    if df.empty:
        raise TraceError(f"{path} has no rows")
    if df.shape[1] < 2:
        raise TraceError(f"{path}: one column ({df.columns[0]!r}); a {series} needs a timestamp column and a {what} "
                         "column, separated by a comma, semicolon, tab or pipe")


def _as_numbers(df: pd.DataFrame, column: str) -> pd.Series:
    """The column as numbers, NaN where a cell is not one; decimal commas read where the file has
    them (pandas leaves a column with one Excel error cell as text, commas and all)."""
    values = df[column]
    numbers = pd.to_numeric(values, errors="coerce")
    if pd.api.types.is_numeric_dtype(values):
        return numbers
    text = values.astype(str).str.strip()
    if df.attrs.get("decimal") == ",":
        # 10,5 and 1.200,5, and 1.200.000: where the decimal mark is the comma, points separate
        # thousands (a file with 1.200 in it has a decimal point: _has_decimal_commas).
        european = (text.str.match(DECIMAL_COMMA.pattern) | dotted_thousands(text)) & numbers.isna()
        if not european.any():
            return numbers
        return numbers.fillna(pd.to_numeric(text.where(european).str.replace(".", "", regex=False)
                                            .str.replace(",", ".", regex=False), errors="coerce"))
    commas = text.str.match(DECIMAL_COMMA.pattern) & numbers.isna()
    if not commas.any():
        return numbers
    # In a file whose decimal mark is a point, a column of quoted "10,5" (LibreOffice's German
    # export) has decimal commas, unless a number in it reads as thousands (1,041) or has a point.
    if text.str.match(THOUSANDS.pattern).any() or text.str.match(DECIMAL_POINT.pattern).any():
        return numbers
    return numbers.fillna(pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce"))


def numberlike_share(df: pd.DataFrame, column: str) -> float:
    """The share of cells that are numbers, or comma numbers (which `numbers_in` refuses by name)."""
    if column in df.attrs.get("dotted_thousands", {}):
        return 1.0  # numbers with thousands separators, which numbers_in refuses by name
    return float((_as_numbers(df, column).notna() | df[column].astype(str).str.match(DECIMAL_COMMA.pattern)).mean())


def numeric_columns(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The numeric (not true/false) columns among `columns`, and text columns whose filled cells
    are numbers but for a few (an Excel error cell, "n/a"); pandas' "Unnamed: 0" (a saved
    DataFrame's index: row numbers, not values) after the rest."""
    def is_numeric(c: str) -> bool:
        if c in df.attrs.get("dotted_thousands", {}):
            # Numbers with thousands separators: chosen where they stand, and refused (numbers_in)
            # with the way to name another column. Passed over, the next numeric column (a latency
            # beside German counts) would be taken for the count without a word.
            return True
        values = df[c]
        if pd.api.types.is_bool_dtype(values):
            return False
        if pd.api.types.is_numeric_dtype(values):
            return bool(values.notna().any())  # an empty column (a series with no samples) holds no values
        filled = values.notna() & (values.astype(str).str.strip() != "")
        return bool(filled.any()) and _as_numbers(df, c)[filled].notna().mean() >= 0.9

    numeric = [c for c in columns if is_numeric(c)]
    return sorted(numeric, key=lambda c: bool(re.fullmatch(r"Unnamed: \d+", str(c))))


def numbers_in(df: pd.DataFrame, column: str, path: str | Path, what: str) -> np.ndarray:
    """The column as numbers, empty cells as NaN; refused when it holds no numbers or when
    words outnumber them (a text column, or numbers this reader did not recognise as such)."""
    values = df[column]
    numbers = _as_numbers(df, column)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        words = pd.Series(False, index=values.index)
    else:
        words = values.notna() & (values.astype(str).str.strip() != "") & numbers.isna()
    commas = words & values.astype(str).str.match(DECIMAL_COMMA.pattern) if words.any() else words
    if commas.any():  # 1,041 in a file whose other numbers settle nothing: 1041 or 1.041?
        row = int(np.argmax(commas.to_numpy()))
        raise TraceError(f"{path}: {what} column {column!r} holds {values.iloc[row]!r} in data row {row + 1}: a "
                         "thousands separator or a decimal comma? Export the numbers without thousands separators, "
                         "or with decimal points")
    if column in df.attrs.get("dotted_thousands", {}):
        row, cell, why = df.attrs["dotted_thousands"][column]
        raise TraceError(f"{path}: {what} column {column!r} holds {cell!r} in data row {row + 1}, {why} Export "
                         f"the numbers without thousands separators, or, if the {what} is another column, name it "
                         f"with --{what}-column")
    if numbers.notna().sum() == 0 or words.sum() > numbers.notna().sum():
        row = int(np.argmax(words.to_numpy())) if words.any() else 0
        cell = "is empty" if pd.isna(values.iloc[row]) else f"holds {values.iloc[row]!r}"
        raise TraceError(f"{path}: {what} column {column!r} holds no numbers to speak of: data row {row + 1} {cell}. "
                         "Give plain numbers (a decimal point, or decimal commas in a file separated by semicolons), "
                         f"or name another column with --{what}-column")
    return numbers.to_numpy(dtype=float)


def load_trace(path: str | Path, timestamp_col: str | None = None, count_col: str | None = None,
               date_order: str | None = None) -> Trace:
    """Requests per minute from a CSV of request counts per sample; a coarser step is spread
    evenly over its minutes, finer ones are summed per minute. Missing samples and empty or
    non-numeric counts are zero demand, and counted as missing minutes."""
    df = read_table(path)
    require_two_columns(df, path, "trace", "count")
    df.attrs["date_order"] = date_order
    tcol, ts, used = find_timestamps(df, path, timestamp_col)
    ccol, counts = find_numbers(df, path, used, count_col, COUNT_NAMES, "count")
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
