"""daily_report: the intelligence report for one UTC day, from the warehouse."""


import functools
import os
from typing import Callable

import dagster as dg
import pandas as pd

from ..core.atomic import atomic_write_json
from ..core.report import SCHEMA_VERSION, service_report
from ..core.parallel import started_processes, submit_processes
from ..core.report_render import by_attention, render_charts_of, to_markdown, write_html_report
from ..core.report_render import warm_up as warm_up_charts
from ..core.telemetry import METRIC_COLUMNS
from ..resources.neuropilot import NeuroPilotResource
from ..storage.reports import report_store
from .apply import APPLIED_TABLE
from .decide import DECISIONS_TABLE
from .detect import ANOMALIES_TABLE
from .common import RAW_TABLE, WHOLE_RANGE_IN_ONE_RUN, by_service, each_partition_overlapped, watched_services
from .overrides import OVERRIDES_TABLE
from .partitions import daily_partitions, day_bounds, windows_of_day

CHARTED_SERVICES = 10
MIN_CHARTED_FOR_WORKERS = 4  # fewer services' charts are drawn in the run's own process


def charted_services(cfg) -> int:
    """report.charted_services: how many services (those needing attention most) get charts."""
    value = (cfg.raw.get("report") or {}).get("charted_services", CHARTED_SERVICES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise dg.Failure(f"report.charted_services in {cfg.config_path} must be a whole number >= 1, got {value!r}.",
                         allow_retries=False)
    return value


def report_name(day_key: str) -> str:
    return f"daily_report_{day_key.replace('-', '')}.json"


def report_path(reports_dir, day_key: str):
    return reports_dir / report_name(day_key)


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="report",
    kinds={"json"},
    deps=["anomalies", "threshold_decision", "terraform_vars", "reward", "anomaly_model", "policy_backtest"],
    description="Health score, trends, anomalies, scaling actions, threshold changes, cost projection, learning "
                "status and recommendations for one UTC day; saved as reports/daily_report_YYYYMMDD.json.",
)
def daily_report(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    wh, models = neuropilot.warehouse(cfg), neuropilot.models(cfg)

    @functools.cache  # the newest day's is asked twice: to size the chart workers, then for its report
    def services_of(day: str) -> list[str]:
        return watched_services(cfg, wh, windows_of_day(day))  # the report covers every service

    # The chart workers start first and load matplotlib while the report is computed (~1 s a
    # worker, about what the report takes): charting then starts at once. A backfill's run
    # keeps them for all its days (sized by the newest day: fleets grow).
    charted = min(charted_services(cfg), len(services_of(max(context.partition_keys))))
    workers = min(os.cpu_count() or 1, charted) if charted >= MIN_CHARTED_FOR_WORKERS else 0
    with started_processes(workers, warm_up=warm_up_charts) as chart_workers:
        return each_partition_overlapped(
            context, lambda day: _start_daily_report(day, cfg, wh, models, services_of(day), chart_workers))


def _start_daily_report(day: str, cfg, wh, models, services: list[str], chart_workers
                        ) -> Callable[[], dg.MaterializeResult]:
    """Compute and save the day's report, hand its charts to the workers; the function returned
    waits for the charts, writes the HTML page, publishes and gives the materialization."""
    start, end = day_bounds(day)
    cols = ["service", "ts", *METRIC_COLUMNS]
    raw = wh.read_window(RAW_TABLE, start - pd.Timedelta(days=7), end, columns=cols, services=services)
    if raw.empty or raw["ts"].max() < start:
        raise dg.Failure(f"No raw_metrics for {day}: run the ops cycle for that day's windows first.")
    windows = windows_of_day(day)
    anomalies = wh.read_partitions(ANOMALIES_TABLE, windows, services=services)
    decisions = wh.read_partitions(DECISIONS_TABLE, windows, services=services)
    applied = wh.read_partitions(APPLIED_TABLE, windows, services=services)
    if not decisions.empty and not applied.empty:
        decisions = decisions.merge(applied[["partition", "service", "applied"]], on=["partition", "service"], how="left")
    registry = models.registry(services)
    report = {"schema_version": SCHEMA_VERSION, "date": day,
              "window": {"start": start.isoformat(), "end": end.isoformat()},
              "generated_at": pd.Timestamp.now(tz="UTC").isoformat(), "services": {}}
    empty_raw = raw.iloc[0:0]
    raw_of, anomalies_of, decisions_of = by_service(raw), by_service(anomalies), by_service(decisions)
    costs_of = {s: r.assign(day=r["ts"].dt.floor("D")).groupby("day")["cost_usd"].sum() for s, r in raw_of.items()}
    for service in services:
        r = raw_of.get(service, empty_raw)
        today = r[r["ts"] >= start]
        previous = r[(r["ts"] >= start - pd.Timedelta(days=1)) & (r["ts"] < start)]
        baseline = r[r["ts"] < start]
        daily_costs = costs_of.get(service, pd.Series(dtype=float)).tolist()
        reg = registry[(registry["service"] == service) & (registry["partition"] <= day)]
        model = reg.iloc[-1].to_dict() if not reg.empty else None
        if model:
            model["partition"] = model.get("partition")
        report["services"][service] = service_report(
            service, today, previous, baseline,
            anomalies_of.get(service, anomalies.iloc[0:0]), decisions_of.get(service, decisions.iloc[0:0]),
            daily_costs, model, cfg.sla_target, cfg.slo_p95_ms, cfg.cost_budget,
        )
    if OVERRIDES_TABLE in wh.tables():
        overrides = wh.query(f"SELECT * FROM {OVERRIDES_TABLE}")
        overrides = overrides[overrides["detected_at"].str[:10] == day]  # shown in that day's report
        for service in services:
            mine = overrides[overrides["service"] == service].tail(20)
            report["services"][service]["human_overrides"] = mine.drop(columns=["service"]).to_dict(orient="records")
    # Charts (11 PNGs a service, ~0.08 s each) for the services needing attention most: with a
    # hundred services, charting all would take minutes and bury the ones that matter.
    report["charted_services"] = by_attention(report)[:charted_services(cfg)]
    path = report_path(cfg.reports_dir, day)
    atomic_write_json(path, report)
    # For people: PNG charts beside the JSON, an HTML page, and the Markdown as the UI preview.
    week_windows = [w for d in range(7) for w in windows_of_day((start - pd.Timedelta(days=d)).strftime("%Y-%m-%d"))]
    week_decisions = wh.read_partitions(DECISIONS_TABLE, sorted(week_windows), services=services)
    week_decisions_of = by_service(week_decisions)
    jobs = []
    for service in report["charted_services"]:
        r = raw_of.get(service, empty_raw)
        jobs.append((cfg.reports_dir, path.stem, service, r[r["ts"] >= start], r[r["ts"] < start],
                     anomalies_of.get(service, anomalies.iloc[0:0]),
                     week_decisions_of.get(service, week_decisions.iloc[0:0]),
                     costs_of.get(service, pd.Series(dtype=float)), cfg.cost_budget / 30.0))
    # ~0.9 s of matplotlib per charted service: on every core when there are several.
    drawn = submit_processes(render_charts_of, jobs, chart_workers, min_items=MIN_CHARTED_FOR_WORKERS)
    return lambda: _finish_daily_report(cfg, report, path, dict(zip(report["charted_services"], drawn())))


def _finish_daily_report(cfg, report: dict, path, charts: dict) -> dg.MaterializeResult:
    html_path = path.with_suffix(".html")
    write_html_report(html_path, report, charts)
    reports = report_store(cfg)
    # The charts and the page first, the JSON last: a delivery that finds the JSON finds the rest.
    reports.publish(*(name for c in charts.values() for name in c.values()), html_path.name, path.name)
    # Headline figures: the service needing attention most (the only one, for a single service).
    worst_name = report["charted_services"][0]
    worst = report["services"][worst_name]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(reports.display(path.name)),
        "html": dg.MetadataValue.path(reports.display(html_path.name)),
        "report": dg.MetadataValue.md(to_markdown(report)),
        "services": len(report["services"]),
        "needs_attention_most": worst_name,
        "health_score": worst["health"]["score"],
        "sla_percent": worst["sla"]["sla_percent"],
        "services_missing_sla": sum(not r["sla"]["met"] for r in report["services"].values()),
        "anomalies": int(sum(r["anomalies"]["total"] for r in report["services"].values())),
        "projected_monthly_cost": float(sum(r["cost"]["projected_monthly"] for r in report["services"].values())),
        "learning_status": worst["learning"]["status"],
        "recommendations": dg.MetadataValue.json(worst["recommendations"]),
    })
