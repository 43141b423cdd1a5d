"""Daemon backfill benchmark: the whole pipeline backfilled from the UI, on a real daemon.

    python benchmarks/daemon_backfill.py --services 10 --days 2

What a user gets from the asset graph's "Materialize all" over a range of days: `dagster-daemon`
and `dagster-webserver` on the repository's dagster.yaml (a fresh PostgreSQL database on
127.0.0.1:5432, dropped afterwards), and an asset backfill of every asset of the ops cycle,
training and report over the days' partitions, launched through GraphQL as the UI's backfill
dialog does. Same input as benchmarks/backfill.py (shifted and rescaled copies of the real
WorldCup98 demand through the reference service model), which runs the same days in one process
in the order `neuropilot backfill` uses; compare the two.

Prints each run (job, partition, when it was created and started after the launch, how long it
ran), the wall time, the runs' own time, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cycle import START, days_from, prepare_home, service_names  # noqa: E402

from neuropilot_pipeline_tests.e2e.production_stack import Database, DagsterStack, wait_for  # noqa: E402

JOBS = {"ops_cycle", "train_model", "report_job"}


class WallClock:
    """The real clock (the end-to-end test fakes it; a benchmark must not)."""

    def env(self) -> dict[str, str]:
        return {}


def _is_run_worker(pid: str) -> bool:
    """A run worker: the process the code server spawns for a run (multiprocessing spawn, its
    parent `dagster api grpc`). Its own chart and training workers have the run as parent."""
    proc = Path("/proc") / pid
    if b"spawn_main" not in (proc / "cmdline").read_bytes():
        return False
    ppid = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("PPid:")).split()[1]
    return b"api\x00grpc" in (Path("/proc") / ppid / "cmdline").read_bytes()


def watch_run_workers(stop: threading.Event, peak_kb: list[int]) -> None:
    """The largest high-water RSS of any run worker (its chart and training workers are
    processes of their own, not counted), sampled until `stop`."""
    while not stop.wait(0.5):
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if not _is_run_worker(proc.name):
                    continue
                hwm = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("VmHWM:"))
            except (OSError, StopIteration):
                continue  # the process ended meanwhile
            peak_kb[0] = max(peak_kb[0], int(hwm.split()[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--root", type=Path, default=Path("/tmp/neuropilot-bench/daemon-backfill"), help="replaced")
    args = ap.parse_args()
    problem = Database.server_reachable()
    if problem:
        raise SystemExit(f"PostgreSQL is not reachable on 127.0.0.1:5432: {problem}")
    shutil.rmtree(args.root, ignore_errors=True)
    args.root.mkdir(parents=True)
    home = args.root / "home"
    prepare_home(home, service_names(args.services), args.days)
    db = Database()
    db.create()
    stack = DagsterStack(args.root, db, WallClock(), {"NEUROPILOT_HOME": str(home),
                                                     "NEUROPILOT_CONFIG": str(home / "ops_config.yaml"),
                                                     "NEUROPILOT_PARTITIONS_START": START})
    try:
        stack.start_webserver()
        stack.start_daemon()
        stack.wait_until_serving()
        days = days_from(START, args.days)
        windows = [f"{d}-{h:02d}:00" for d in days for h in (0, 6, 12, 18)]
        nodes = stack.gql("{ assetNodes { assetKey { path } jobNames partitionDefinition { name } } }")["assetNodes"]
        chosen = [n for n in nodes if set(n["jobNames"]) & JOBS]
        ranges = []
        for n in chosen:
            six_hourly = "ops_cycle" in n["jobNames"]
            first, last = (windows[0], windows[-1]) if six_hourly else (days[0], days[-1])
            ranges.append({"assetKey": {"path": n["assetKey"]["path"]}, "partitions": {"range": {"start": first, "end": last}}})
        peak_kb, stop = [0], threading.Event()
        threading.Thread(target=watch_run_workers, args=(stop, peak_kb), daemon=True).start()
        t0 = time.time()
        data = stack.gql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
            ... on InvalidSubsetError { message } } }""", {"p": {"partitionsByAssets": ranges, "title": "benchmark"}})
        if data["launchPartitionBackfill"]["__typename"] != "LaunchBackfillSuccess":
            raise SystemExit(f"the backfill was not launched: {data}")
        backfill_id = data["launchPartitionBackfill"]["backfillId"]
        print(f"asset backfill {backfill_id}: {len(chosen)} assets, {args.days} days ({len(windows)} windows), "
              f"{args.services} services", flush=True)

        def finished():
            status = stack.gql("""query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status } } }""", {"id": backfill_id})["partitionBackfillOrError"]["status"]
            return status if status != "REQUESTED" else None

        status = wait_for("the backfill to finish", finished, 6 * 3600, interval=2, on_timeout=stack.log_tails)
        wall = time.time() - t0
        stop.set()
        # A run covers one partition, or a range (the assets' BackfillPolicy): its range tags.
        runs = db.query("SELECT coalesce(r.partition, (SELECT string_agg(t.value, ' .. ' ORDER BY t.key DESC) "
                        "FROM run_tags t WHERE t.run_id = r.run_id AND t.key LIKE 'dagster/asset_partition_range_%%')) "
                        "AS partition, r.status, r.create_timestamp, r.start_time, r.end_time, "
                        "(SELECT string_agg(DISTINCT trim(both '[]\"' FROM e.asset_key), ',') FROM event_logs e "
                        " WHERE e.run_id = r.run_id AND e.dagster_event_type = 'ASSET_MATERIALIZATION') AS assets "
                        "FROM runs r ORDER BY r.id")
    finally:
        stack.stop()
        db.drop()
    print(f"\n{'partitions':34s} {'status':8s} {'created':>8s} {'started':>8s} {'ran':>6s}  assets")
    work = []
    for r in runs:
        created = r["create_timestamp"].replace(tzinfo=dt.timezone.utc).timestamp() - t0
        ran = (r["end_time"] or 0) - (r["start_time"] or 0)
        work.append(ran)
        print(f"{r['partition'] or '-':34s} {r['status']:8s} {created:7.1f}s {(r['start_time'] or t0) - t0:7.1f}s "
              f"{ran:5.1f}s  {(r['assets'] or '')[:80]}")
    print(f"\nbackfill {status}: {len(runs)} runs in {wall:.1f} s ({wall / 60:.1f} min); the runs themselves "
          f"{sum(work):.1f} s (median {statistics.median(work) if work else 0:.1f} s a run); "
          f"peak RSS of a run worker {peak_kb[0] / 1024:.0f} MB")
    print(f"compare, in one process: python benchmarks/backfill.py --services {args.services} --days {args.days}")
    print(f"reproduce: python benchmarks/daemon_backfill.py --services {args.services} --days {args.days}")
    print(json.dumps({"services": args.services, "days": args.days, "status": status, "wall_s": round(wall, 1),
                      "runs": len(runs), "run_s": round(sum(work), 1), "peak_rss_mb": round(peak_kb[0] / 1024, 1)}))


if __name__ == "__main__":
    main()
