"""Concurrent writers: two runs of the same partition at once, and DuckDB readers while
partitions are being replaced. Afterwards everything is whole and nothing is doubled."""

import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.tfvars import read_tfvars
from neuropilot_pipeline.storage.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"2026-11-01-{h:02d}:00" for h in (0, 6, 12, 18)]
ROWS = 50_000


def _writer(root: str, stop_at: float) -> None:
    wh = Warehouse(root)
    g = 0
    while time.time() < stop_at:
        g += 1
        for key in KEYS:
            wh.write_partition("raw_metrics", key, pd.DataFrame({"service": "web", "generation": np.full(ROWS, g),
                                                                 "value": np.arange(ROWS, dtype=float)}))


def test_duckdb_readers_never_see_a_torn_or_missing_partition_during_writes(tmp_path):
    wh = Warehouse(tmp_path)
    for key in KEYS:
        wh.write_partition("raw_metrics", key, pd.DataFrame({"service": "web", "generation": np.zeros(ROWS, dtype=int),
                                                             "value": np.arange(ROWS, dtype=float)}))
    writer = mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), time.time() + 6))
    writer.start()
    reads = 0
    try:
        while writer.is_alive():
            df = wh.query("SELECT generation, count(*) AS n, sum(value) AS s FROM raw_metrics GROUP BY ALL")
            # Every partition is one whole generation: counts come in multiples of a full partition.
            assert df["n"].sum() == len(KEYS) * ROWS
            assert (df["n"] % ROWS == 0).all() and (df["s"] == df["n"] // ROWS * (ROWS * (ROWS - 1) / 2)).all()
            reads += 1
    finally:
        writer.join()
    assert writer.exitcode == 0
    assert reads > 10


@pytest.mark.parametrize("read", ["query", "read_partitions"])
def test_a_read_answers_from_the_files_as_they_were_when_it_began(tmp_path, monkeypatch, read):
    """DuckDB plans from a file's statistics and scans it in a second open: a partition renamed
    into place in between once gave 'Perfect hash aggregate ... exceeded total groups' in the
    test above. Each read pins the version of every file it reads (hard links) when it begins,
    so a partition replaced during the read is not seen, and nothing of the pins is left."""
    wh = Warehouse(tmp_path)

    def generation(g: int) -> pd.DataFrame:
        return pd.DataFrame({"service": "web", "generation": np.full(10, g), "value": np.arange(10, dtype=float)})
    wh.write_partition("raw_metrics", KEYS[0], generation(0))
    real_pinned = Warehouse._pinned

    @contextlib.contextmanager
    def replaced_while_reading(self, files):
        with real_pinned(self, files) as pinned:
            wh.write_partition("raw_metrics", KEYS[0], generation(1))  # a writer lands mid-read
            yield pinned
    monkeypatch.setattr(Warehouse, "_pinned", replaced_while_reading)

    def generations() -> set:
        if read == "query":
            return set(wh.query("SELECT DISTINCT generation FROM raw_metrics")["generation"])
        return set(wh.read_partitions("raw_metrics", [KEYS[0]], columns=["generation"])["generation"])
    assert generations() == {0}
    assert generations() == {1}  # the next read sees the new version
    assert not any((tmp_path / ".pinned").iterdir())
    assert wh.tables() == ["raw_metrics"]
    # The links of a reader killed mid-read go at the next read (they would keep old versions).
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / ".pinned" / f"{dead}-x").mkdir()
    os.link(wh.partition_path("raw_metrics", KEYS[0]), tmp_path / ".pinned" / f"{dead}-x" / "0.parquet")
    generations()
    assert not any((tmp_path / ".pinned").iterdir())


def _cycle(home: Path, config: Path, dagster_home: Path, partition: str) -> subprocess.Popen:
    env = {**os.environ, "NEUROPILOT_HOME": str(home), "NEUROPILOT_CONFIG": str(config),
           "DAGSTER_HOME": str(dagster_home), "NEUROPILOT_MODE": "apply", "NEUROPILOT_ROLLOUT__MONITOR_DAYS": "0"}
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return subprocess.Popen([sys.executable, "-m", "neuropilot_pipeline.cli", "cycle", "--partition", partition],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_runs_of_the_same_window_at_once_apply_it_once(tmp_path):
    home = tmp_path / "home"
    config = prepare_demo_home(home, fresh=True)
    first = _cycle(home, config, tmp_path / "dagster_a", KEYS[0])
    out = first.communicate(timeout=300)[0]  # window 00:00-06:00 once, so 06:00 has a predecessor
    assert first.returncode == 0, out
    # Now the same window from two processes at once (a backfill racing the schedule).
    env_runs = [_cycle(home, config, tmp_path / name, KEYS[1]) for name in ("dagster_b", "dagster_c")]
    outputs = [p.communicate(timeout=300)[0] for p in env_runs]
    assert [p.returncode for p in env_runs] == [0, 0], outputs
    repo = home / "infra"
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%(trailers:key=NeuroPilot-Partition,valueonly)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert log.count(f"{KEYS[1]}/web") == 1, log  # applied once, not twice
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert status == ""
    read_tfvars(repo / "web" / "terraform.tfvars")
    wh = Warehouse(home / "warehouse")
    for table in ("raw_metrics", "metric_features", "reward", "threshold_decisions", "applied_changes"):
        assert len(wh.read_partition(table, KEYS[1])) > 0, table
    wh.read_partition("anomalies", KEYS[1])  # whole and readable (a quiet window has no rows)
    assert not list(home.rglob(".*.tmp"))
