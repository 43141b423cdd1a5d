"""The two clocks of the pipeline: 6-hour ops-cycle windows and UTC days."""


import os

import dagster as dg
import pandas as pd

from ..core.config import load_ops_config

WINDOW_HOURS = 6
WINDOW_KEY_FORMAT = "%Y-%m-%d-%H:%M"


def _start_date() -> str:
    # Read once when the code location loads: partitions must not move under a running instance.
    return os.environ.get("NEUROPILOT_PARTITIONS_START") or load_ops_config().partitions_start


START_DATE = _start_date()

six_hourly_partitions = dg.TimeWindowPartitionsDefinition(
    start=f"{START_DATE}-00:00",
    cron_schedule="0 */6 * * *",
    fmt=WINDOW_KEY_FORMAT,
    timezone="UTC",
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")

# A window is scored by the model trained on the day before it.
previous_day = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
# Chained state (policy, detectors): window P starts from the state at the end of P-1.
previous_window = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def window_bounds(partition_key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.to_datetime(partition_key, format=WINDOW_KEY_FORMAT, utc=True)
    return start, start + pd.Timedelta(hours=WINDOW_HOURS)


def day_bounds(partition_key: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(partition_key).tz_localize("UTC")
    return start, start + pd.Timedelta(days=1)


def previous_window_key(partition_key: str) -> str:
    start, _ = window_bounds(partition_key)
    return (start - pd.Timedelta(hours=WINDOW_HOURS)).strftime(WINDOW_KEY_FORMAT)


def window_key(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime(WINDOW_KEY_FORMAT)


def day_of_window(partition_key: str) -> str:
    return partition_key[:10]


def windows_of_day(day_key: str) -> list[str]:
    start, _ = day_bounds(day_key)
    return [window_key(start + pd.Timedelta(hours=h)) for h in range(0, 24, WINDOW_HOURS)]
