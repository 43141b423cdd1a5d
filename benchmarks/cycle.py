"""Ops-cycle benchmark: one 6-hour cycle for N services through Dagster, end to end.

    python benchmarks/cycle.py --services 100           # also: 1, 10
    python benchmarks/cycle.py --services 100 --repeat 3

Input: N simulated services, each a shifted and rescaled copy of the real WorldCup98 demand
(the bundled trace) through the reference service model, 8 metrics at a 1-minute step. The
first run builds a 7-day history for them by running the real pipeline (ops_cycle for every
window, train_model every day; the report is not needed for a cycle) into
`--home` (default /tmp/neuropilot-bench/services-N), and prints how long that took. Each
measurement then copies that home and, in a fresh process, materializes the ops cycle of the
next window (raw -> features -> anomalies, forecast -> reward -> decision -> tfvars + git commit,
apply mode, learned policy) with `execute_in_process` on a real Dagster instance (SQLite)
through the same job the schedule launches.

Prints the per-stage breakdown (seconds per asset step, from the run's own events), the run's
wall time, process wall time (imports included), peak RSS, and ends with one JSON line:
{"services": N, "wall_s": ..., "per_service_s": ..., "peak_rss_mb": ...}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = "2026-01-01"  # the partitions' first day; the demand trace is aligned to it
HISTORY_MARKER = "bench-history.json"


def service_names(n: int) -> list[str]:
    return [f"svc-{i:03d}" for i in range(n)]


def prepare_home(home: Path, services: list[str], days: int) -> None:
    """A NeuroPilot home watching `services` (apply mode, learned policy, its own infra repo)."""
    from neuropilot_pipeline.core.config import default_config_path
    from neuropilot_pipeline.core.gitops import InfraRepo
    from neuropilot_pipeline.core.yaml_edit import update_yaml_values

    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    config = home / "ops_config.yaml"
    shutil.copyfile(default_config_path(), config)
    update_yaml_values(config, {"mode": "apply", "policy": "learned", "cost_budget": 250.0,
                                "rollout.monitor_days": 1, "partitions.start": START, "services": services})
    tfvars = (ROOT / "neuropilot_pipeline" / "data" / "demo_infra" / "terraform.tfvars").read_text()
    InfraRepo.init_demo(home / "infra", {f"{s}/terraform.tfvars": tfvars for s in services})
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def use_home(home: Path) -> None:
    os.environ.update({"NEUROPILOT_HOME": str(home), "NEUROPILOT_CONFIG": str(home / "ops_config.yaml"),
                       "DAGSTER_HOME": str(home / "dagster"), "NEUROPILOT_PARTITIONS_START": START})


def days_from(start: str, n: int) -> list[str]:
    import pandas as pd

    return [(pd.Timestamp(start) + pd.Timedelta(days=i)).strftime("%Y-%m-%d") for i in range(n)]


def run(job: str, key: str, instance):
    from neuropilot_pipeline.cli import _failure_message, run_job

    t0 = time.perf_counter()
    result = run_job(job, key, instance)
    if not result.success:
        raise SystemExit(f"{job} {key} failed: {_failure_message(result)}")
    return result, time.perf_counter() - t0


def step_seconds(result) -> dict[str, float]:
    """Seconds per step, as the run's STEP_SUCCESS events record them."""
    return {event.step_key: event.event_specific_data.duration_ms / 1000.0
            for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}


def build_history(home: Path, services: list[str], days: int, with_report: bool = False) -> dict:
    """Run the pipeline over `days` days for the services: the history a cycle reads, and a backfill."""
    prepare_home(home, services, days)
    use_home(home)
    import dagster as dg

    from neuropilot_pipeline.cli import backfill_plan  # reads the partitions' start: after use_home

    instance = dg.DagsterInstance.get()
    t0 = time.perf_counter()
    per_job: dict[str, float] = {}
    plan = backfill_plan(days_from(START, days), with_report)  # the runs of `neuropilot backfill`, in its order
    for i, (job, key) in enumerate(plan):
        _, s = run(job, key, instance)
        per_job[job] = per_job.get(job, 0.0) + s
        if i + 1 == len(plan) or plan[i + 1][1][:10] != key[:10]:
            print(f"  {key[:10]}: {time.perf_counter() - t0:7.1f} s so far", flush=True)
    summary = {"services": len(services), "days": days, "wall_s": round(time.perf_counter() - t0, 1),
               "per_job_s": {k: round(v, 1) for k, v in per_job.items()}}
    (home / HISTORY_MARKER).write_text(json.dumps(summary))
    return summary


def measure(home: Path, window: str) -> dict:
    """In this (fresh) process: one ops cycle of `window`; its figures as a dict."""
    t_process = time.perf_counter()
    use_home(home)
    import dagster as dg

    from neuropilot_pipeline.cli import _defs

    instance = dg.DagsterInstance.get()
    t_load = time.perf_counter()
    _defs()  # what every run process pays first: importing the code location
    load = time.perf_counter() - t_load
    result, wall = run("ops_cycle", window, instance)
    return {"wall_s": load + wall, "load_s": load, "run_s": wall,
            "process_s": time.perf_counter() - t_process, "steps": step_seconds(result),
            # ru_maxrss is KiB on Linux
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "commits": subprocess.run(["git", "-C", str(home / "infra"), "rev-list", "--count", "HEAD"],
                                      capture_output=True, text=True).stdout.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, required=True)
    ap.add_argument("--history-days", type=int, default=7)
    ap.add_argument("--home", type=Path, help="where the history is built (default /tmp/neuropilot-bench/services-N)")
    ap.add_argument("--repeat", type=int, default=1, help="measure the cycle this many times (fresh copy each)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the history even if one is there")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this window in this process
    args = ap.parse_args()
    home = (args.home or Path("/tmp/neuropilot-bench") / f"services-{args.services}").resolve()
    if args.measure:
        print(json.dumps(measure(home, args.measure)))
        return

    services = service_names(args.services)
    marker = home / HISTORY_MARKER
    history = json.loads(marker.read_text()) if marker.exists() else None
    if args.rebuild or not history or history["services"] != args.services or history["days"] != args.history_days:
        print(f"building {args.history_days} days of history for {args.services} services in {home} ...", flush=True)
        history = build_history(home, services, args.history_days)
        print(f"history built in {history['wall_s']} s ({history['per_job_s']})", flush=True)
    else:
        print(f"reusing the {history['days']}-day history in {home} (built in {history['wall_s']} s; --rebuild to redo)")
    window = f"{days_from(START, args.history_days + 1)[-1]}-00:00"
    scratch = home.parent / f"{home.name}-measure"
    runs = []
    for i in range(args.repeat):
        if scratch.exists():
            shutil.rmtree(scratch)
        shutil.copytree(home, scratch, symlinks=True)
        # The copy's config and instance must point at the copy.
        out = subprocess.run([sys.executable, __file__, "--services", str(args.services), "--home", str(scratch),
                              "--measure", window], capture_output=True, text=True,
                             env={**os.environ, "NEUROPILOT_HOME": str(scratch)})
        if out.returncode != 0:
            raise SystemExit(f"measurement failed:\n{out.stdout}\n{out.stderr}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    shutil.rmtree(scratch, ignore_errors=True)
    best = min(runs, key=lambda r: r["wall_s"])
    print(f"\nops cycle {window}, {args.services} services x 8 metrics, 1-minute step, "
          f"{args.history_days}-day trailing history ({len(runs)} run{'s' * (len(runs) > 1)}; best shown)")
    for step, seconds in sorted(best["steps"].items(), key=lambda kv: -kv[1]):
        print(f"  {step:22s} {seconds:7.2f} s")
    all_runs = ", ".join(f"{r['wall_s']:.2f}" for r in runs)
    print(f"  {'Dagster and I/O':22s} {best['run_s'] - sum(best['steps'].values()):7.2f} s   (run minus its steps)")
    print(f"  {'code location load':22s} {best['load_s']:7.2f} s   (importing the definitions, once per run process)")
    print(f"  {'wall, end to end':22s} {best['wall_s']:7.2f} s   (load + run; all runs: {all_runs})")
    print(f"  {'process wall':22s} {best['process_s']:7.2f} s   (incl. Python and Dagster imports)")
    print(f"  {'peak RSS':22s} {best['peak_rss_mb']:7.0f} MB")
    print(f"reproduce: python benchmarks/cycle.py --services {args.services}")
    print(json.dumps({"services": args.services, "wall_s": round(best["wall_s"], 2),
                      "per_service_s": round(best["wall_s"] / args.services, 4),
                      "peak_rss_mb": round(best["peak_rss_mb"], 1)}))


if __name__ == "__main__":
    main()
