"""`neuropilot backfill`: whole days in order in one process, recorded on the Dagster instance,
stopping at the first failed run with the cause and the command that resumes."""

import re
import subprocess
import sys

import dagster as dg
import pytest

from neuropilot_pipeline.cli import BACKFILL_TAG, backfill_plan, prepare_demo_home
from neuropilot_pipeline.storage.warehouse import Warehouse

DAYS = ["2026-11-01", "2026-11-02"]


def neuropilot(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "neuropilot_pipeline.cli", *args], capture_output=True, text=True,
                          timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def runs_tagged(home, backfill_id):
    """(job, partition, status) of the backfill's runs, in the order they were created."""
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
        return [(r.dagster_run.job_name, r.dagster_run.tags.get("dagster/partition"), r.dagster_run.status.value)
                for r in sorted(records, key=lambda r: r.create_timestamp)]


def all_runs(home):
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return len(instance.get_run_records())


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("backfill")
    home = tmp_path / "home"
    prepare_demo_home(home, fresh=True)
    proc = neuropilot(tmp_path, "backfill", "--home", str(home), "--from", DAYS[0], "--to", DAYS[1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    backfill_id = re.search(r"^backfill (\w+):", proc.stdout, re.M).group(1)
    return tmp_path, home, proc.stdout, backfill_id


def test_days_run_in_order_as_tagged_runs_of_the_instance(backfilled):
    _, home, out, backfill_id = backfilled
    expected = [(job, key, "SUCCESS") for job, key in backfill_plan(DAYS)]
    # Each day: its four windows, then its model (the next day's windows are scored with it), then its report.
    assert [job for job, _, _ in expected[:6]] == ["ops_cycle"] * 4 + ["train_model", "report_job"]
    assert runs_tagged(home, backfill_id) == expected
    assert f"backfill {backfill_id}: {len(expected)} runs succeeded" in out
    decided = Warehouse(home / "warehouse").read_partitions("threshold_decisions", [k for j, k in backfill_plan(DAYS)
                                                                                    if j == "ops_cycle"])
    assert sorted(decided["partition"].unique()) == [k for j, k in backfill_plan(DAYS) if j == "ops_cycle"]
    assert (home / "reports" / "daily_report_20261102.json").exists()


def test_the_first_failed_run_stops_the_backfill_with_its_cause_and_the_resume_command(backfilled):
    tmp_path, home, _, _ = backfilled
    # The last policy state of the first backfill, cut short as by a copy that did not finish.
    damaged = home / "state" / "policy" / "2026-11-02-1800.npz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    proc = neuropilot(tmp_path, "backfill", "--home", str(home), "--from", "2026-11-03", "--to", "2026-11-04")
    assert proc.returncode == 1
    assert "ops_cycle [2026-11-03-00:00] FAILED" in proc.stdout
    assert f"{damaged} is corrupt" in proc.stdout and "Delete it and re-materialize" in proc.stdout
    assert f"neuropilot backfill --from 2026-11-03 --to 2026-11-04 --home {home}" in proc.stdout
    backfill_id = re.search(r"^backfill (\w+):", proc.stdout, re.M).group(1)
    # Nothing after the failed window ran: it would have started from a state that is not there.
    assert runs_tagged(home, backfill_id) == [("ops_cycle", "2026-11-03-00:00", "FAILURE")]


@pytest.mark.parametrize("first, last, message", [
    ("2026-11-01", "2099-01-01", "ops_cycle: no partition '2099-01-01-18:00'"),  # days in the future
    ("2026-11-02", "2026-11-01", "--to 2026-11-01 is before --from 2026-11-02"),
    ("2026-11-31", "2026-12-01", "expected days as YYYY-MM-DD"),
])
def test_a_range_that_cannot_run_whole_is_refused_before_any_run(backfilled, first, last, message):
    tmp_path, home, _, _ = backfilled
    before = all_runs(home)
    proc = neuropilot(tmp_path, "backfill", "--home", str(home), "--from", first, "--to", last)
    assert proc.returncode != 0 and message in proc.stderr, proc.stdout + proc.stderr
    assert all_runs(home) == before
