import os
from datetime import datetime, timezone

import pandas as pd
import pytest

from neuropilot_pipeline.storage.warehouse import Warehouse, WarehouseError, window_partition_keys


def frame(start, minutes, service="web"):
    ts = pd.date_range(start, periods=minutes, freq="1min", tz="UTC")
    return pd.DataFrame({"service": service, "ts": ts, "x": range(minutes)})


def test_window_reads_only_overlapping_partitions_and_filters_rows(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write_partition("raw_metrics", "2026-11-01-00:00", frame("2026-11-01 00:00", 360))
    wh.write_partition("raw_metrics", "2026-11-01-06:00", frame("2026-11-01 06:00", 360))
    out = wh.read_window("raw_metrics", datetime(2026, 11, 1, 5, tzinfo=timezone.utc),
                         datetime(2026, 11, 1, 7, tzinfo=timezone.utc))
    assert len(out) == 120
    assert out["ts"].min() == pd.Timestamp("2026-11-01 05:00", tz="UTC")
    assert str(out["ts"].dt.tz) == "UTC"
    assert window_partition_keys(datetime(2026, 11, 1, 5, tzinfo=timezone.utc),
                                 datetime(2026, 11, 1, 7, tzinfo=timezone.utc)) == ["2026-11-01-00:00", "2026-11-01-06:00"]


def test_a_partition_reads_back_as_the_frame_that_was_written(tmp_path):
    # Every column type the assets store, with the gaps real tables have: missing strings and
    # numbers, and a column an older partition lacks (union_by_name fills it with nulls).
    wh = Warehouse(tmp_path)
    newer = pd.DataFrame({
        "service": ["api", "web"], "ts": pd.to_datetime(["2026-11-01 06:00", "2026-11-01 06:01"], utc=True),
        "value": [1.5, float("nan")], "samples": [3, 4], "converged": [True, False],
        "previous_version": [None, "v1"], "note": ["a", "b"],
    })
    older = newer.drop(columns="note").assign(ts=newer["ts"] - pd.Timedelta(hours=6))
    wh.write_partition("model_registry", "2026-11-01-00:00", older)
    wh.write_partition("model_registry", "2026-11-01-06:00", newer)
    out = wh.read_partitions("model_registry", ["2026-11-01-00:00", "2026-11-01-06:00"])
    expected = pd.concat([older.assign(note=None), newer]).sort_values(["service", "ts"], ignore_index=True)
    expected["note"] = expected["note"].astype("str")
    pd.testing.assert_frame_equal(out, expected)
    assert out["ts"].dtype == "datetime64[us, UTC]" and out["samples"].dtype == "int64"
    assert out["converged"].dtype == bool


def test_rewrite_replaces_partition_and_views_see_every_table(tmp_path):
    wh = Warehouse(tmp_path)
    wh.write_partition("raw_metrics", "2026-11-01-00:00", frame("2026-11-01", 360))
    wh.write_partition("raw_metrics", "2026-11-01-00:00", frame("2026-11-01", 10))
    wh.write_partition("reward", "2026-11-01-00:00", pd.DataFrame({"service": ["web"], "reward": [0.5]}))
    assert wh.query("SELECT count(*) AS n FROM raw_metrics")["n"][0] == 10
    assert wh.query("SELECT reward FROM reward")["reward"][0] == 0.5
    assert [p.name for p in wh.partition_files("raw_metrics")] == ["2026-11-01-0000.parquet"]


def test_failed_write_keeps_previous_partition_and_leaves_no_temp_file(tmp_path, monkeypatch):
    wh = Warehouse(tmp_path)
    wh.write_partition("raw_metrics", "2026-11-01-00:00", frame("2026-11-01", 360))
    import pyarrow.parquet as pq

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(WarehouseError, match="no space left on the device.*previous version is intact"):
        wh.write_partition("raw_metrics", "2026-11-01-00:00", frame("2026-11-01", 5))
    assert len(wh.read_partition("raw_metrics", "2026-11-01-00:00")) == 360
    assert not [p for p in os.listdir(tmp_path / "raw_metrics") if p.endswith(".tmp")]


def test_missing_partition_error_says_what_to_materialize(tmp_path):
    with pytest.raises(WarehouseError, match="Materialize raw_metrics for 2026-11-01-00:00"):
        Warehouse(tmp_path).read_partition("raw_metrics", "2026-11-01-00:00")
