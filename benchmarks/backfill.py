"""Backfill benchmark: a month of the whole pipeline for N services, through Dagster.

    python benchmarks/backfill.py --services 100 --days 30

Same input as benchmarks/cycle.py (N shifted and rescaled copies of the real WorldCup98
demand through the reference service model, 8 metrics at a 1-minute step). Every partition
is materialized in order, as a backfill launched from the UI runs them: for each day the four
ops cycles (raw -> features -> anomalies, forecast -> reward -> decision -> tfvars + git commit,
apply mode, learned policy), the day's model training and the daily report (policy backtest,
report JSON/HTML with charts; delivery is skipped when Slack and Notion are not configured).
Runs are `execute_in_process` on one SQLite Dagster instance.

Prints wall time, seconds per ops-cycle partition, seconds per job, the warehouse's bytes per
service-day (and models/state beside it), peak RSS, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cycle import build_history, service_names  # noqa: E402


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--home", type=Path, help="where it runs (default /tmp/neuropilot-bench/backfill-N); replaced")
    ap.add_argument("--no-report", action="store_true", help="ops cycles and training only")
    args = ap.parse_args()
    home = (args.home or Path("/tmp/neuropilot-bench") / f"backfill-{args.services}").resolve()
    print(f"backfilling {args.days} days for {args.services} services in {home} ...", flush=True)
    summary = build_history(home, service_names(args.services), args.days, with_report=not args.no_report)
    service_days = args.services * args.days
    warehouse = folder_bytes(home / "warehouse")
    per_job = summary["per_job_s"]
    windows = 4 * args.days
    print(f"\n{args.days}-day backfill, {args.services} services x 8 metrics, 1-minute step")
    print(f"  wall                     {summary['wall_s']:9.1f} s  ({summary['wall_s'] / 60:.1f} min)")
    for job, seconds in per_job.items():
        count = windows if job == "ops_cycle" else args.days
        print(f"  {job:24s} {seconds:9.1f} s  ({seconds / count:.2f} s per partition, {count} partitions)")
    print(f"  warehouse                {warehouse / 1e6:9.1f} MB  ({warehouse / service_days / 1e3:.1f} kB per service-day)")
    for name in ("models", "state", "reports"):
        size = folder_bytes(home / name)
        print(f"  {name:24s} {size / 1e6:9.1f} MB  ({size / service_days / 1e3:.1f} kB per service-day)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"  peak RSS                 {rss:9.0f} MB")
    print(f"reproduce: python benchmarks/backfill.py --services {args.services} --days {args.days}")
    print(json.dumps({"services": args.services, "days": args.days, "wall_s": summary["wall_s"],
                      "ops_cycle_s_per_partition": round(per_job["ops_cycle"] / windows, 2),
                      "warehouse_bytes_per_service_day": round(warehouse / service_days),
                      "peak_rss_mb": round(rss, 1)}))


if __name__ == "__main__":
    main()
