"""A run worker that dies or hangs mid-step must not stop the pipeline.

Every step that writes the warehouse holds the one `warehouse_writer` slot while it runs. When
its run worker dies (OOM-killed) Dagster marks the run failed, but the slot stays claimed by
the dead run unless `free_slots_after_run_end_seconds` is set: every later run, the run
retry of the same window included, then waits in the queue for ever (seen here before the
shipped dagster.yaml set it). A worker that hangs instead (a stuck call, a frozen process) is
not noticed at all unless run monitoring's `max_runtime_seconds` ends its run.

Real processes on the shipped dagster.yaml and a fresh PostgreSQL database: `dagster-daemon run`
and `dagster-webserver`, ops cycles launched through GraphQL as the UI's "Materialize" does, and
their run workers SIGKILLed or SIGSTOPped while a step holds the pool. Only run monitoring's
durations are shortened (hours and minutes to seconds) so the test does not wait for hours.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import pytest

from .production_stack import (
    LOCATION, UTC, Database, DagsterStack, FakeClock, StackError, engine_messages, wait_for, worker_pid,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

STEP_ASSETS = {"decide_and_apply": {"threshold_decision", "terraform_vars"}}
OPS_ASSETS = {"raw_metrics", "metric_features", "anomalies", "forecast_alerts", "reward", "threshold_decision",
              "terraform_vars"}
MAX_RUNTIME_S = 40
SHORTENED = {"max_runtime_seconds": MAX_RUNTIME_S, "poll_interval_seconds": 5, "free_slots_after_run_end_seconds": 5}


def run_rows(db: Database) -> list[dict]:
    rows = db.query("SELECT run_id, status, start_time FROM runs ORDER BY create_timestamp")
    tags: dict[str, dict] = {}
    for t in db.query("SELECT run_id, key, value FROM run_tags"):
        tags.setdefault(t["run_id"], {})[t["key"]] = t["value"]
    for r in rows:
        r["tags"] = tags.get(r["run_id"], {})
    return rows


def claimed_slots(db: Database, run_id: str) -> list[str]:
    return [r["step_key"] for r in db.query(
        "SELECT step_key FROM concurrency_slots WHERE concurrency_key = 'warehouse_writer' AND run_id = %s "
        "AND deleted = false", (run_id,))]


def status_of(db: Database, run_id: str) -> str:
    return next(r["status"] for r in run_rows(db) if r["run_id"] == run_id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    problem = Database.server_reachable()
    if problem:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 (scripts/test.sh starts it): {problem}")
    root = tmp_path_factory.mktemp("dead_worker")
    db = Database()
    db.create()
    clock = FakeClock(root)
    stack = DagsterStack(root, db, clock, {"NEUROPILOT_PARTITIONS_START": "2026-11-03"}, run_monitoring=SHORTENED)
    try:
        clock.set(dt.datetime(2026, 11, 5, 1, 0, tzinfo=UTC))
        stack.start_webserver()
        stack.start_daemon()
        stack.wait_until_serving()
        yield stack
    finally:
        leftovers = stack.stop()
        clock.close()
        db.drop()
        assert not leftovers, f"processes of the stack had to be SIGKILLed at teardown: {leftovers}"


def launch_window_and_stop_its_worker_in_a_pooled_step(stack: DagsterStack, window: str) -> tuple[str, int, list]:
    """Launch the ops cycle of `window` and SIGSTOP its run worker while one of its steps holds the
    warehouse_writer slot. Returns the run id, the worker's pid and the steps holding slots."""
    db = stack.db
    data = stack.gql("""mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
        ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""", {"p": {
        "selector": {**LOCATION, "jobName": "ops_cycle"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": window}]},
    }})
    assert data["launchRun"]["__typename"] == "LaunchRunSuccess", data
    run_id = data["launchRun"]["run"]["runId"]

    def frozen_holding_a_slot():
        pid = worker_pid(db, run_id)
        if pid is None or not claimed_slots(db, run_id):
            return None
        os.kill(pid, signal.SIGSTOP)
        if claimed_slots(db, run_id):
            return pid
        os.kill(pid, signal.SIGCONT)  # caught between two steps: let it run on and try again
        return None
    pid = wait_for("the run worker to hold a warehouse_writer slot", frozen_holding_a_slot, 180, interval=0.1,
                   on_timeout=stack.log_tails)
    held = claimed_slots(db, run_id)
    assert held
    return run_id, pid, held


def assert_slot_freed_and_window_retried(stack: DagsterStack, run_id: str, window: str, interrupted: list) -> None:
    db = stack.db
    wait_for("the failed run's pool slot to be freed", lambda: not claimed_slots(db, run_id), 60,
             on_timeout=stack.log_tails)

    def retried():
        rows = [r for r in run_rows(db) if r["tags"].get("dagster/parent_run_id") == run_id]
        if rows and rows[0]["status"] in ("FAILURE", "CANCELED"):
            raise StackError(f"the retry failed:\n{engine_messages(db, rows[0]['run_id'])[-5:]}")
        return rows[0] if rows and rows[0]["status"] == "SUCCESS" else None
    retry = wait_for("the run retry of the window to succeed", retried, 240, interval=2, on_timeout=stack.log_tails)
    assert retry["tags"]["dagster/partition"] == window
    assert retry["tags"].get("dagster/retry_number") == "1"
    # The whole window is materialized: what the first worker finished, and the rest, from the
    # interrupted step on, by the retry.
    def materialized(run: str) -> set[str]:
        return {json.loads(r["asset_key"])[0] for r in db.query(
            "SELECT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition = %s "
            "AND run_id = %s", (window, run))}
    first, again = materialized(run_id), materialized(retry["run_id"])
    # (A step materializes its asset; decide_and_apply both of its own.)
    interrupted_assets = set().union(*(STEP_ASSETS.get(step, {step}) for step in interrupted))
    assert interrupted_assets <= again and not interrupted_assets & first
    assert OPS_ASSETS <= first | again, OPS_ASSETS - (first | again)


def test_a_killed_run_worker_fails_its_run_frees_its_pool_slot_and_the_window_is_retried(stack):
    window = "2026-11-04-00:00"
    run_id, pid, held = launch_window_and_stop_its_worker_in_a_pooled_step(stack, window)
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    # The code server sees its child die and fails the run at once; the slot is another matter.
    wait_for("the killed worker's run to fail", lambda: status_of(stack.db, run_id) == "FAILURE", 60,
             on_timeout=stack.log_tails)
    assert claimed_slots(stack.db, run_id) == held
    assert_slot_freed_and_window_retried(stack, run_id, window, held)


def test_a_hung_run_worker_is_ended_after_max_runtime_and_the_window_is_retried(stack):
    window = "2026-11-04-06:00"
    run_id, pid, held = launch_window_and_stop_its_worker_in_a_pooled_step(stack, window)
    code_server = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    try:
        # Frozen, the worker is alive to everyone: only its run time gives it away.
        time.sleep(5)
        assert status_of(stack.db, run_id) == "STARTED"
        assert claimed_slots(stack.db, run_id) == held
        wait_for("run monitoring to end the hung run", lambda: status_of(stack.db, run_id) == "FAILURE",
                 MAX_RUNTIME_S + 60, on_timeout=stack.log_tails)
        assert any(f"maximum runtime of {MAX_RUNTIME_S} seconds" in m for m in engine_messages(stack.db, run_id))
        assert_slot_freed_and_window_retried(stack, run_id, window, held)
    finally:
        # A frozen process is harsher than a hung step: the code server that launched it deadlocks
        # on the termination request (multiprocessing's Event.set waits for every waiter, the
        # frozen worker among them, to wake), and would not shut down at teardown. Both go.
        for victim in (pid, code_server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def test_skipped_schedule_ticks_are_kept_a_week_and_the_rest_ninety_days(stack, monkeypatch):
    """The daily schedules re-check every 10 minutes until their day is complete, so most of
    their ticks are SKIPPED: the instance the daemon runs purges those after 7 days."""
    import dagster as dg
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import TickStatus

    for name, value in stack.env().items():
        if name.startswith("DAGSTER_PG_"):
            monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(stack.dagster_home)) as instance:
        days = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
    assert days == {TickStatus.SKIPPED: 7, TickStatus.STARTED: 90, TickStatus.FAILURE: 90, TickStatus.SUCCESS: 90}
