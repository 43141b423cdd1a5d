"""`neuropilot`: the command line, thin over the same code the Dagster assets run."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

DEMO_MARKER = ".neuropilot-demo"


def _home(args) -> Path:
    return Path(args.home or os.environ.get("NEUROPILOT_HOME") or Path.cwd() / "neuropilot_home").resolve()


def _use_home(home: Path, config: Path | None = None) -> None:
    """Point this process (and the in-process Dagster runs) at one NeuroPilot home."""
    os.environ["NEUROPILOT_HOME"] = str(home)
    if config is not None:
        os.environ["NEUROPILOT_CONFIG"] = str(config)
    if not os.environ.get("DAGSTER_HOME"):
        # A local SQLite instance beside the data; production sets DAGSTER_HOME to a folder
        # holding the repository's dagster.yaml (PostgreSQL).
        local = home / "dagster"
        local.mkdir(parents=True, exist_ok=True)
        if not (local / "dagster.yaml").exists():
            (local / "dagster.yaml").write_text("# Local Dagster instance of `neuropilot` (SQLite in this folder).\n"
                                                "telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(local)
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)


def _instance():
    import dagster as dg

    return dg.DagsterInstance.get()


def _defs():
    from .definitions import defs

    return defs


class PartitionError(SystemExit):
    pass


def check_partition(job_name: str, partition_key: str):
    """The job, once `partition_key` is known to be one of its partitions."""
    job = _defs().resolve_job_def(job_name)
    partitions = job.partitions_def
    if partitions is not None and not partitions.has_partition_key(partition_key):
        keys = partitions.get_partition_keys()
        first, last = (keys[0], keys[-1]) if keys else ("?", "?")
        raise PartitionError(f"{job_name}: no partition {partition_key!r}; partitions run from {first} to {last} "
                             "(set partitions.start in ops_config.yaml to move the first one).")
    return job


def run_job(job_name: str, partition_key: str, instance, quiet: bool = True, services: list[str] | None = None,
            tags: dict[str, str] | None = None):
    job = check_partition(job_name, partition_key)
    from .assets.common import SERVICES_TAG

    tags = {"neuropilot/launched_by": "cli", **({SERVICES_TAG: ",".join(services)} if services else {}),
            **(tags or {})}
    return job.execute_in_process(partition_key=partition_key, instance=instance, raise_on_error=False, tags=tags,
                                  run_config={"loggers": {"console": {"config": {"log_level": "ERROR" if quiet else "INFO"}}}})


def _failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            err = event.step_failure_data.error
            # The first error that is not Dagster's wrapper: NeuroPilot's own errors name the
            # file and the fix, while their causes (a JSONDecodeError, say) only the symptom.
            while err.cause is not None and err.cls_name.startswith("Dagster") and err.cause.message:
                err = err.cause
            message = err.message.strip()
            for prefix in ("dagster._core.definitions.events.Failure: ", "Failure: "):
                message = message.removeprefix(prefix)
            return f"{event.step_key}: {message}"
    return "run failed (see the Dagster UI for the run's logs)"


# ---- demo ---------------------------------------------------------------------------------

def prepare_demo_home(home: Path, fresh: bool) -> Path:
    from .core.config import default_config_path
    from .core.gitops import InfraRepo
    from .core.yaml_edit import update_yaml_values

    if home.exists() and any(home.iterdir()):
        if not (home / DEMO_MARKER).exists():
            raise SystemExit(f"{home} is not empty and was not created by `neuropilot demo`; choose another --home.")
        if fresh:
            for child in home.iterdir():
                if child.name != DEMO_MARKER:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("created by `neuropilot demo`; safe to delete\n")
    config = home / "ops_config.yaml"
    if not config.exists():
        shutil.copyfile(default_config_path(), config)
        # The demo applies its decisions after one day of monitoring (so the simulated service
        # feels them within the demo) and budgets for what the demo service costs at 40 peak
        # instances (about $250 a month at the hindsight-best fixed thresholds).
        update_yaml_values(config, {"mode": "apply", "cost_budget": DEMO_COST_BUDGET, "rollout.monitor_days": 1})
    infra = home / "infra"
    if not (infra / ".git").exists():
        starting = (Path(__file__).parent / "data" / "demo_infra" / "terraform.tfvars").read_text()
        InfraRepo.init_demo(infra, {"web/terraform.tfvars": starting})
    return config


DEMO_COST_BUDGET = 250.0


def cmd_demo(args) -> int:
    home = _home(args)
    config = prepare_demo_home(home, fresh=not args.keep)
    _use_home(home, config)
    from .assets.partitions import START_DATE, windows_of_day
    from .core.config import load_ops_config
    import pandas as pd

    cfg = load_ops_config()
    instance = _instance()
    days = [(pd.Timestamp(START_DATE) + pd.Timedelta(days=i)).strftime("%Y-%m-%d") for i in range(args.days)]
    print(f"NeuroPilot demo: {args.days} days of the WorldCup98 trace through the simulated service "
          f"(mode={cfg.mode}, policy={cfg.policy}); home {home}")
    t0 = time.time()
    failures = 0
    for day in days:
        for window in windows_of_day(day):
            result = run_job("ops_cycle", window, instance)
            failures += _print_window(cfg, window, result)
        result = run_job("train_model", day, instance)
        if not result.success:
            print(f"  {day} model: not trained — {_failure_message(result)}")
        else:
            _print_model(cfg, day)
        result = run_job("report_job", day, instance)
        if not result.success:
            failures += 1
            print(f"  {day} report FAILED — {_failure_message(result)}")
    print(f"\nDone in {time.time() - t0:.0f} s.")
    print_demo_summary(cfg, days)
    return 1 if failures else 0


def _print_window(cfg, window: str, result) -> int:
    from .storage.warehouse import Warehouse

    if not result.success:
        print(f"  {window}  FAILED — {_failure_message(result)}")
        return 1
    wh = Warehouse(cfg.warehouse_dir)
    rew = wh.read_partitions("reward", [window])
    dec = wh.read_partitions("threshold_decisions", [window])
    anom = wh.read_partitions("anomalies", [window])
    app = wh.read_partitions("applied_changes", [window])
    r, d = rew.iloc[0], dec.iloc[0]
    changes = [f"{n.replace('new_', '')} {d['old_' + n[4:]]:g}→{d[n]:g}" for n in d.index
               if n.startswith("new_") and d[n] != d["old_" + n[4:]]]
    status = app.iloc[0]["status"] if not app.empty else "-"
    print(f"  {window}  SLA {r['sla_percent']:7.3f}%  reward {r['reward']:+.2f}  anomalies {len(anom):3d}  "
          f"{', '.join(changes) or 'no change'}{'' if not changes else ' [' + status + ']'}")
    return 0


def _print_model(cfg, day: str) -> None:
    from .storage.warehouse import Warehouse

    reg = Warehouse(cfg.warehouse_dir).read_partitions("model_registry", [day])
    for _, m in reg.iterrows():
        print(f"  {day} model {m['service']}: version {m['version']} ({m['mode']}, {m['samples']} samples, "
              f"{m['n_components']} components, loss {m['loss']:.3f} → {m['learning_status']})")


def print_demo_summary(cfg, days: list[str]) -> None:
    from .core.service_model import FIXED_BASELINE
    from .storage.warehouse import Warehouse
    from .assets.report import report_name

    wh = Warehouse(cfg.warehouse_dir)
    sev = wh.query("SELECT severity, count(*) AS n FROM anomalies GROUP BY severity") if "anomalies" in wh.tables() else None
    counts = {r.severity: int(r.n) for r in sev.itertuples()} if sev is not None else {}
    dec = wh.query("SELECT * FROM threshold_decisions")
    app = wh.query("SELECT * FROM applied_changes")
    raw = wh.query("SELECT service, ts, p95_latency_ms, cost_usd, request_rate_per_s FROM raw_metrics ORDER BY service, ts")
    changed = sum(1 for _, d in dec.iterrows() if any(d[c] != d["old_" + c[4:]] for c in dec.columns if c.startswith("new_")))
    good = (raw["p95_latency_ms"] <= cfg.slo_p95_ms).mean() * 100
    cost = raw["cost_usd"].sum()
    baseline = fixed_baseline_replay(cfg, raw, FIXED_BASELINE)
    print("\n=== NeuroPilot demo summary ===")
    print(f"Period: {days[0]} .. {days[-1]} ({len(days)} days, {len(raw)} service-minutes)")
    print("Anomalies by severity: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in ("critical", "high", "medium", "low")))
    print(f"Decisions: {len(dec)} windows, {changed} with threshold changes, {int(app['applied'].sum())} applied "
          f"({cfg.mode} mode)")
    print(f"{'':24s}{'SLA':>10s}{'cost (USD)':>12s}")
    print(f"{'NeuroPilot (' + cfg.policy + ')':24s}{good:9.3f}%{cost:12.2f}")
    print(f"{'fixed 80/30 thresholds':24s}{baseline['sla']:9.3f}%{baseline['cost']:12.2f}")
    saving = (1 - cost / baseline["cost"]) * 100 if baseline["cost"] else 0.0
    print(f"Cost vs fixed 80/30: {saving:+.1f} % saved; SLA target {cfg.sla_target} %")
    print(f"Reports:   {cfg.reports_location}  (latest {report_name(days[-1])})")
    print(f"tfvars:    {cfg.tfvars_path(cfg.services[0])}  (git log in {cfg.infra_repo})")
    print(f"Warehouse: {cfg.warehouse_dir}  (Parquet; query with DuckDB)")
    print(f"Models:    {cfg.models_dir}")
    print(f"Browse:    DAGSTER_HOME={os.environ['DAGSTER_HOME']} NEUROPILOT_HOME={cfg.home} "
          f"NEUROPILOT_CONFIG={cfg.config_path} dagster dev -w workspace.yaml")


def fixed_baseline_replay(cfg, raw, thresholds) -> dict[str, float]:
    """The same demand through the same simulated service with the fixed 80/30 thresholds."""
    import numpy as np

    from .core.service_model import AutoscaledService, ServiceParams

    good = minutes = 0
    cost = 0.0
    for service, g in raw.groupby("service"):
        requests = g["request_rate_per_s"].to_numpy() * 60.0
        out = AutoscaledService(ServiceParams()).run(requests, thresholds)
        good += int(np.sum(out["good"]))
        minutes += len(requests)
        cost += float(np.sum(out["cost_usd"]))
    return {"sla": 100.0 * good / minutes if minutes else float("nan"), "cost": cost}


# ---- the seed's four modes ---------------------------------------------------------------

def _services(args) -> list[str] | None:
    """--service NAME, repeated or comma-separated; None for every service."""
    return [s for v in (getattr(args, "service", None) or []) for s in v.split(",") if s.strip()] or None


def _run_modes(args, jobs: list[tuple[str, str]]) -> int:
    _use_home(_home(args), Path(args.config) if args.config else None)
    instance = _instance()
    status = 0
    services = _services(args)
    for job, key in jobs:
        result = run_job(job, key, instance, services=services if job != "report_job" else None)
        print(f"{job} [{key}]: {'ok' if result.success else 'FAILED — ' + _failure_message(result)}")
        status |= 0 if result.success else 1
    return status


def _latest_window(args) -> str:
    import pandas as pd

    now = pd.Timestamp.now(tz="UTC") if not args.at else pd.Timestamp(args.at, tz="UTC")
    start = now.floor("6h") - pd.Timedelta(hours=6)
    return start.strftime("%Y-%m-%d-%H:%M")


def _latest_day(args) -> str:
    import pandas as pd

    now = pd.Timestamp.now(tz="UTC") if not args.at else pd.Timestamp(args.at, tz="UTC")
    return (now.floor("D") - pd.Timedelta(days=1)).strftime("%Y-%m-%d")


def cmd_cycle(args) -> int:
    return _run_modes(args, [("ops_cycle", args.partition or _latest_window(args))])


def cmd_train(args) -> int:
    if args.lookback_hours:
        os.environ["NEUROPILOT_MODEL__LOOKBACK_HOURS"] = str(args.lookback_hours)
    return _run_modes(args, [("train_model", args.partition or _latest_day(args))])


def cmd_report(args) -> int:
    return _run_modes(args, [("report_job", args.partition or _latest_day(args))])


def cmd_full_cycle(args) -> int:
    window, day = args.partition or _latest_window(args), _latest_day(args)
    return _run_modes(args, [("ops_cycle", window), ("train_model", day), ("report_job", day)])


BACKFILL_TAG = "neuropilot/backfill"


def backfill_plan(days: list[str], with_report: bool = True) -> list[tuple[str, str]]:
    """The runs of a backfill over whole days, in the only order that gives the same results as
    the schedules: each day's four windows, then the day's model (the next day's windows are
    scored with it), then the day's report."""
    from .assets.partitions import windows_of_day

    plan = []
    for day in days:
        plan += [("ops_cycle", window) for window in windows_of_day(day)]
        plan.append(("train_model", day))
        if with_report:
            plan.append(("report_job", day))
    return plan


def _days_between(first: str, last: str) -> list[str]:
    import pandas as pd

    try:
        start, end = pd.Timestamp(first), pd.Timestamp(last)
    except ValueError:
        raise PartitionError(f"--from {first!r} / --to {last!r}: expected days as YYYY-MM-DD") from None
    if end < start:
        raise PartitionError(f"--to {last} is before --from {first}")
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end, freq="D")]


def cmd_backfill(args) -> int:
    """Whole days, in order, in this process, on the Dagster instance of DAGSTER_HOME.

    A backfill from the UI runs each asset over its whole range (BackfillPolicy), a run per
    asset range, each launched on an iteration of Dagster's backfill daemon (every 30 s). Here
    each window is its own run, one after the other at once, window by window as the schedules
    run them: the way to backfill the simulated source, whose telemetry depends on the
    thresholds applied so far. They are ordinary runs of the instance (the UI lists them,
    tagged neuropilot/backfill=ID, and lineage is the same), and their steps take the
    warehouse_writer pool like any run, so the daemon's scheduled runs can go on meanwhile."""
    import uuid

    _use_home(_home(args), Path(args.config) if args.config else None)
    days = _days_between(args.start, args.end)
    plan = backfill_plan(days, with_report=not args.no_report)
    # Every partition exists before the first run starts (they are contiguous: the ends suffice).
    for job in dict.fromkeys(job for job, _ in plan):
        keys = [key for j, key in plan if j == job]
        check_partition(job, keys[0])
        check_partition(job, keys[-1])
    instance = _instance()
    services = _services(args)
    backfill_id = uuid.uuid4().hex[:8]
    print(f"backfill {backfill_id}: {len(days)} day(s) {days[0]} .. {days[-1]}, {len(plan)} runs "
          f"(tag {BACKFILL_TAG}={backfill_id}){' for ' + ', '.join(services) if services else ''}", flush=True)
    t0 = time.perf_counter()
    day_started = t0
    for i, (job, key) in enumerate(plan):
        # The report covers every service: a backfill of some services still reports the fleet.
        result = run_job(job, key, instance, services=services if job != "report_job" else None,
                         tags={BACKFILL_TAG: backfill_id})
        if not result.success:
            day = key[:10]
            rest = (["--home", args.home] if args.home else []) + (["--config", args.config] if args.config else [])
            rest += [f"--service={s}" for s in services or []] + (["--no-report"] if args.no_report else [])
            print(f"{job} [{key}] FAILED — {_failure_message(result)}\n"
                  f"Stopped: every later window starts from this one's state. Fix the cause, then resume with\n"
                  f"  neuropilot backfill --from {day} --to {days[-1]} {' '.join(rest)}".rstrip(), flush=True)
            return 1
        if i + 1 == len(plan) or plan[i + 1][1][:10] != key[:10]:  # the day's last run
            now = time.perf_counter()
            print(f"  {key[:10]}: {now - day_started:6.1f} s  ({now - t0:7.1f} s so far)", flush=True)
            day_started = now
    print(f"backfill {backfill_id}: {len(plan)} runs succeeded in {time.perf_counter() - t0:.1f} s")
    return 0


def non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def cmd_detect(args) -> int:
    from .core.detectors import detect_csv

    summary = detect_csv(args.input, args.output, timestamp_col=args.timestamp_column, value_col=args.value_column,
                         date_order=args.date_order, min_deviation=args.min_deviation)
    print(json.dumps(summary, indent=2, default=str) if summary is not None else f"wrote {args.output}")
    return 0


def cmd_backtest(args) -> int:
    from .core.backtest import backtest_main

    summary = backtest_main(args.trace, policy=args.policy, peak_instances=args.peak_instances, scale=args.scale,
                            out=args.out, timestamp_column=args.timestamp_column, count_column=args.count_column,
                            date_order=args.date_order)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_rollback(args) -> int:
    """Restore the thresholds of an earlier decision through a new commit; the policy adopts
    them as its baseline and holds them like a human override."""
    import pandas as pd

    from .assets.overrides import record_overrides
    from .core.config import MANAGED_THRESHOLDS, load_ops_config
    from .core.gitops import list_decision_commits, thresholds_at_partition, _values_at
    from .core.tfvars import apply_tfvars_updates, read_tfvars
    from .storage.state import StateStore
    from .storage.warehouse import Warehouse

    _use_home(_home(args), Path(args.config) if args.config else None)
    cfg = load_ops_config()
    service = args.service or cfg.services[0]
    repo = cfg.infra()
    path = cfg.tfvars_path(service)
    repo.assert_no_foreign_changes([path])
    commits = list_decision_commits(repo, path)
    if args.to:
        values = thresholds_at_partition(repo, path, f"{args.to}/{service}")
        if values is None:
            known = ", ".join(p for _, p, _ in commits[:10] if p) or "none"
            print(f"No NeuroPilot commit for partition {args.to} of {service} in {cfg.infra_repo}. Known: {known}")
            return 2
        label = args.to
    else:
        if not commits:
            print(f"NeuroPilot has not committed to {path} yet: nothing to roll back.")
            return 2
        sha, partition, _ = commits[0]
        values = _values_at(repo, f"{sha}^", repo._rel(path))
        label = f"before {partition.rsplit('/', 1)[0] if partition else sha[:8]}"
    before = read_tfvars(path)
    target = {n: values[n] for n in MANAGED_THRESHOLDS if n in values}
    change = apply_tfvars_updates(path, target)
    if not change.changed:
        print(f"{path} already holds the thresholds of {label}; nothing to do.")
        return 0
    moved = [f"{n} {before.get(n)}→{v}" for n, v in target.items() if before.get(n) != v]
    sha = repo.commit_decision([path], f"ai-ops: rollback to {label}: {', '.join(moved)}",
                               "Rolled back with `neuropilot rollback`.", {"NeuroPilot-Rollback-To": f"{label}/{service}"})
    now = pd.Timestamp.now(tz="UTC")
    record_overrides(cfg, StateStore(cfg.state_dir), Warehouse(cfg.warehouse_dir), service, now, source="rollback",
                     changes=[{"var": n, "old": before.get(n), "value": v, "sha": sha, "author": "neuropilot rollback"}
                              for n, v in target.items() if before.get(n) != v])
    print(f"Rolled back {service} to {label}: {', '.join(moved)} (commit {sha[:10]}); held for "
          f"{cfg.human_hold_hours:g} h.")
    return 0


def cmd_check_sources(args) -> int:
    """Connectivity, auth and each query against the configured source, with the fix for each failure."""
    import pandas as pd

    from .core.config import load_ops_config
    from .core.prometheus import SourceError
    from .resources.sources import prometheus_client

    _use_home(_home(args), Path(args.config) if args.config else None)
    cfg = load_ops_config()
    kind = str(cfg.source.get("kind", "simulated"))
    if kind == "simulated":
        print("source.kind is simulated: raw metrics come from the bundled trace; nothing to check.")
        return 0
    rows, failed = [], 0
    try:
        client, queries = prometheus_client(cfg, kind)
    except SourceError as exc:
        print(f"configuration  FAIL  {exc}")
        return 1
    client.retries = 0
    try:
        info = client.check()
        rows.append(("connection + auth", "ok", f"{client.endpoint.label} {info.get('version', '?')} at "
                                                f"{client.endpoint.display_url}"))
    except SourceError as exc:
        rows.append(("connection + auth", "FAIL", str(exc)))
        failed += 1
    end = pd.Timestamp.now(tz="UTC").floor("min")
    start = end - pd.Timedelta(minutes=args.minutes)
    for metric, query in queries.items():
        if failed and rows[0][1] == "FAIL":
            break
        try:
            series = client.query_range(query, start, end)
            services = sorted({s["metric"].get("service", "(no service label)") for s in series})
            if not series:
                rows.append((metric, "FAIL", f"no series in the last {args.minutes} min for {query!r}: check the "
                                             "metric names your exporters publish (Prometheus UI > Graph)"))
                failed += 1
            elif "(no service label)" in services:
                rows.append((metric, "WARN", f"{len(series)} series without a `service` label: add `by (service)`"))
            else:
                rows.append((metric, "ok", f"{len(series)} series, services: {', '.join(services[:6])}"))
        except SourceError as exc:
            rows.append((metric, "FAIL", str(exc)))
            failed += 1
    width = max(len(r[0]) for r in rows)
    for name, status, detail in rows:
        print(f"{name:{width}s}  {status:4s}  {detail}")
    return 1 if failed else 0


def cmd_notion_setup(args) -> int:
    """Check the Notion database's properties and add the missing ones."""
    from .assets.deliver import notion_publisher
    from .core.notion import REQUIRED_PROPERTIES, NotionError

    publisher = notion_publisher()
    if publisher is None:
        print("Set NOTION_API_KEY and NOTION_DATABASE_ID (the database shared with your integration).")
        return 2
    try:
        status = publisher.check_schema(fix=True)
    except NotionError as exc:
        print(f"FAIL  {exc}")
        return 1
    for name, state in status.items():
        print(f"{name:16s} {REQUIRED_PROPERTIES[name]:10s} {state}")
    return 0


def cmd_explain(args) -> int:
    """The chain a threshold decision came from, as the instance recorded it."""
    from .lineage import explain, format_chain

    _use_home(_home(args), Path(args.config) if args.config else None)
    try:
        chain = explain(_instance(), args.partition, args.service)
    except LookupError as exc:
        print(exc)
        return 2
    print(format_chain(chain))
    return 0


# As core/traces.py's DATE_ORDERS, written out so that --help does not import pandas.
DATE_ORDERS = ("dmy", "mdy")
DATE_ORDER_HELP = ("for dates written with numbers, such as 01/03/2026: dmy (day first, 1 March) or mdy (month "
                   "first, 3 January). Needed only when no day in the file is over 12; dotted dates (01.03.2026) "
                   "are read day-first unless this says otherwise")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuropilot", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--home", help="NeuroPilot home (warehouse, models, reports); default $NEUROPILOT_HOME or ./neuropilot_home")
        return sp

    d = common(sub.add_parser("demo", help="fast-forward the bundled trace through the whole pipeline"))
    d.add_argument("--days", type=int, default=7)
    d.add_argument("--keep", action="store_true", help="keep an earlier demo's data instead of starting fresh")
    d.set_defaults(func=cmd_demo)

    for name, func, help_ in (("cycle", cmd_cycle, "run one ops cycle (default: the 6-hour window that just ended)"),
                              ("train", cmd_train, "retrain the anomaly model (default: yesterday)"),
                              ("report", cmd_report, "build the daily report (default: yesterday)"),
                              ("full-cycle", cmd_full_cycle, "ops cycle, training and report")):
        sp = common(sub.add_parser(name, help=help_))
        sp.add_argument("--config", help="ops_config.yaml (default $NEUROPILOT_CONFIG or config/ops_config.yaml)")
        sp.add_argument("--partition", help="partition key, e.g. 2026-11-01-06:00 or 2026-11-01")
        sp.add_argument("--at", help="pretend the current time is this (UTC)")
        if name != "report":
            sp.add_argument("--service", action="append", metavar="NAME",
                            help="only this service (repeat, or a,b); the others' data is left as it was")
        if name == "train":
            sp.add_argument("--lookback-hours", type=int)
        sp.set_defaults(func=func)

    bf = common(sub.add_parser("backfill", help="whole days in order (windows, training, report), in this process",
                               description=cmd_backfill.__doc__))
    bf.add_argument("--from", dest="start", required=True, metavar="DAY", help="first day, YYYY-MM-DD")
    bf.add_argument("--to", dest="end", required=True, metavar="DAY", help="last day, YYYY-MM-DD (included)")
    bf.add_argument("--config", help="ops_config.yaml (default $NEUROPILOT_CONFIG or config/ops_config.yaml)")
    bf.add_argument("--service", action="append", metavar="NAME",
                    help="only this service (repeat, or a,b); the others' data is left as it was")
    bf.add_argument("--no-report", action="store_true", help="windows and training only")
    bf.set_defaults(func=cmd_backfill)

    dt = sub.add_parser("detect", help="score any CSV series with the pipeline's detectors")
    dt.add_argument("input", help="CSV of a timestamp and a value per row: comma, semicolon, tab or pipe, header "
                                   "optional; ISO 8601 timestamps, Unix times or compact dates")
    dt.add_argument("--output", "-o", required=True, help="CSV written: the input's columns and the verdicts")
    dt.add_argument("--timestamp-column", help="name of the timestamp column (default: found by name, then content; "
                                               "a file without a header has 'column 1', 'column 2', ...)")
    dt.add_argument("--value-column", help="name of the value column (default: the first numeric column)")
    dt.add_argument("--date-order", choices=DATE_ORDERS, help=DATE_ORDER_HELP)
    dt.add_argument("--min-deviation", type=non_negative_number, default=0.0, metavar="X",
                    help="the smallest change from the baseline worth an anomaly, in the value's unit (default 0: "
                         "20 %% of the baseline). Give one for a series that sits at 0, such as an error rate")
    dt.set_defaults(func=cmd_detect)

    cs = common(sub.add_parser("check-sources", help="check connectivity, auth and every query of the metrics source"))
    cs.add_argument("--config", help="ops_config.yaml (default $NEUROPILOT_CONFIG or config/ops_config.yaml)")
    cs.add_argument("--minutes", type=int, default=60, help="look-back for the query checks")
    cs.set_defaults(func=cmd_check_sources)

    ex = common(sub.add_parser("explain", help="the chain a threshold decision came from (from the Dagster instance)"))
    ex.add_argument("partition", help="decision partition, e.g. 2026-11-03-06:00")
    ex.add_argument("--service", help="follow this service's rows only (with many services)")
    ex.add_argument("--config", help="ops_config.yaml (default $NEUROPILOT_CONFIG or config/ops_config.yaml)")
    ex.set_defaults(func=cmd_explain)

    ns = sub.add_parser("notion-setup", help="check the Notion database's properties and add the missing ones")
    ns.set_defaults(func=cmd_notion_setup)

    rb = common(sub.add_parser("rollback", help="restore the thresholds of an earlier decision (a new commit)"))
    rb.add_argument("--to", help="decision partition, e.g. 2026-11-03-06:00 (default: undo the latest decision)")
    rb.add_argument("--service", help="service (default: the first configured)")
    rb.add_argument("--config", help="ops_config.yaml (default $NEUROPILOT_CONFIG or config/ops_config.yaml)")
    rb.set_defaults(func=cmd_rollback)

    bt = sub.add_parser("backtest", help="replay a demand trace through the reference service model")
    bt.add_argument("trace", help="CSV of request counts per sample (ISO 8601 or Unix timestamps; README, 'Backtest')")
    bt.add_argument("--policy", choices=["learned", "fixed", "rule"], default="learned",
                    help="learned (default), fixed (80/30, the reference model) or rule")
    g = bt.add_mutually_exclusive_group()
    g.add_argument("--peak-instances", type=float, default=None,
                   help="scale the trace so its busiest minute needs this many instances (default 40)")
    g.add_argument("--scale", type=float, default=None, help="multiply the trace by this factor instead")
    bt.add_argument("--out", default="backtest_out", help="directory for decisions.csv and summary.json "
                                                          "(default backtest_out)")
    bt.add_argument("--timestamp-column", help="the trace's timestamp column (default: found by name and content)")
    bt.add_argument("--count-column", help="the trace's request-count column (default: found by name, else the "
                                           "first numeric column)")
    bt.add_argument("--date-order", choices=DATE_ORDERS, help=DATE_ORDER_HELP)
    bt.set_defaults(func=cmd_backtest)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Bad input or a broken environment: the message names the cause and the fix; a
        # traceback would only bury it. (Set NEUROPILOT_DEBUG=1 to see the traceback.)
        if os.environ.get("NEUROPILOT_DEBUG"):
            raise
        print(f"neuropilot {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
