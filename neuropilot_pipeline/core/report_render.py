"""The daily report for people: Markdown (the UI preview), HTML with PNG charts beside it.

Charts (matplotlib, rendered headless):
- one per metric: the last 24 h against the 7-day baseline (the mean of the same minute of
  day over the previous 7 days), anomalies marked;
- thresholds over the last 7 days (scale-up / scale-down, and the latency threshold);
- instance count against demand;
- cost per day against the daily budget.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .atomic import atomic_path, atomic_write_text

METRIC_LABELS = {
    "cpu_percent": "CPU %", "memory_percent": "Memory %", "p95_latency_ms": "p95 latency (ms)",
    "error_rate_percent": "Error rate %", "request_rate_per_s": "Requests / s", "db_query_p95_ms": "DB p95 (ms)",
    "instance_count": "Instances", "cost_usd": "Cost (USD / min)",
}


def _pyplot():
    """pyplot, headless, imported when the first chart is drawn: importing matplotlib (~0.7 s) with
    this module made every run process of the code location pay for charts only the report draws."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or in CI
    import matplotlib.pyplot as plt

    return plt


def warm_up() -> None:
    """What a chart worker loads before its first chart (pyplot, the fonts), for a pool started
    ahead of the charts."""
    fig, ax = _axes()
    ax.set_title(" ")
    fig.canvas.draw()
    _pyplot().close(fig)


def _axes():
    # Fixed margins rather than bbox_inches="tight", which draws every chart twice to measure
    # it; the right margin leaves room for a twin axis's labels.
    fig, ax = _pyplot().subplots(figsize=(7.5, 2.4))
    fig.subplots_adjust(left=0.08, right=0.92, top=0.88, bottom=0.16)
    return fig, ax


def _dates(ts: pd.Series) -> np.ndarray:
    """Timestamps as matplotlib's day numbers (UTC): converted once per service instead of by
    every plot call, which was a tenth of a chart's time."""
    import matplotlib.dates as mdates

    return mdates.date2num(pd.to_datetime(ts, utc=True).dt.tz_localize(None).to_numpy())


def _save(fig, path: Path, close: bool = True) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    if close:
        _pyplot().close(fig)


def render_charts(out_dir: Path, stem: str, service: str, day: pd.DataFrame, history: pd.DataFrame,
                  anomalies: pd.DataFrame, decisions: pd.DataFrame, daily_costs: pd.Series, budget_per_day: float
                  ) -> dict[str, str]:
    """Write the charts; return {chart name: file name}."""
    charts: dict[str, str] = {}
    if day.empty:
        return charts
    x = _dates(day["ts"])
    base = history.assign(slot=history["ts"].dt.hour * 60 + history["ts"].dt.minute) if not history.empty else None
    slots = (day["ts"].dt.hour * 60 + day["ts"].dt.minute).to_numpy()
    profiles = base.groupby("slot")[list(METRIC_LABELS)].mean() if base is not None and not base.empty else None
    # One figure serves the eight metric charts: each is the previous one with its data, title
    # and legend replaced. A new figure per chart rebuilt its axes, ticks and their text every
    # time, which was half of each chart's cost.
    fig, ax = _axes()
    ax.xaxis_date()
    ax.tick_params(labelsize=7)
    (last_day,) = ax.plot(x, np.full(len(x), np.nan), lw=0.8, color="#1f77b4", label="last 24 h")
    baseline = None
    if profiles is not None:
        (baseline,) = ax.plot(x, np.full(len(x), np.nan), lw=0.8, color="#999999", ls="--", label="7-day baseline")
    marks_of = {m: g for m, g in anomalies.groupby("metric", sort=False)} if not anomalies.empty else {}
    for metric, label in METRIC_LABELS.items():
        for old in ax.collections[:]:
            old.remove()
        last_day.set_ydata(day[metric].to_numpy(dtype=float))
        if baseline is not None:
            baseline.set_ydata(profiles[metric].reindex(slots).to_numpy(dtype=float))
        marks = marks_of.get(metric)
        if marks is not None:
            ax.scatter(_dates(marks["ts"]), marks["value"].to_numpy(dtype=float), color="#d62728", s=18,
                       zorder=3, label="anomaly")
        ax.relim()  # the data limits of this metric's lines alone (relim skips the marks: add them)
        for points in ax.collections:
            ax.update_datalim(points.get_offsets())
        ax.autoscale_view()
        ax.set_title(f"{service}: {label}", fontsize=9, y=1.0)
        ax.legend(fontsize=7, loc="upper left")
        name = f"{stem}_{service}_{metric}.png"
        _save(fig, out_dir / name, close=False)
        charts[metric] = name
    _pyplot().close(fig)
    if not decisions.empty:
        d = decisions.sort_values("partition")
        when = _dates(pd.Series(pd.to_datetime(d["partition"], format="%Y-%m-%d-%H:%M", utc=True)))
        fig, ax = _axes()
        ax.xaxis_date()
        ax.step(when, d["new_cpu_scale_up_threshold"], where="post", label="scale-up %")
        ax.step(when, d["new_cpu_scale_down_threshold"], where="post", label="scale-down %")
        ax2 = ax.twinx()
        ax2.step(when, d["new_latency_threshold_ms"], where="post", color="#2ca02c", ls=":", label="latency ms")
        ax.set_title(f"{service}: thresholds, last 7 days", fontsize=9, y=1.0)
        ax.tick_params(labelsize=7)
        ax2.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
        ax2.legend(fontsize=7, loc="upper right")
        name = f"{stem}_{service}_thresholds.png"
        _save(fig, out_dir / name)
        charts["thresholds"] = name
    fig, ax = _axes()
    ax.xaxis_date()
    ax.plot(x, day["instance_count"].to_numpy(dtype=float), lw=1.0, color="#ff7f0e", label="instances")
    ax2 = ax.twinx()
    ax2.plot(x, day["request_rate_per_s"].to_numpy(dtype=float), lw=0.6, color="#1f77b4", alpha=0.6,
             label="requests / s")
    ax.set_title(f"{service}: instances against demand", fontsize=9, y=1.0)
    ax.tick_params(labelsize=7)
    ax2.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper right")
    name = f"{stem}_{service}_instances.png"
    _save(fig, out_dir / name)
    charts["instances"] = name
    fig, ax = _axes()
    fig.subplots_adjust(bottom=0.3)  # room for the rotated dates
    ax.bar([str(d.date()) for d in daily_costs.index], daily_costs.to_numpy(), color="#9467bd", label="cost / day")
    ax.axhline(budget_per_day, color="#d62728", ls="--", lw=1, label=f"budget / day ({budget_per_day:.2f})")
    ax.set_title(f"{service}: cost against budget (USD)", fontsize=9, y=1.0)
    ax.tick_params(labelsize=7, axis="x", rotation=30)
    ax.tick_params(labelsize=7, axis="y")
    ax.legend(fontsize=7, loc="lower left")  # a fixed place: "best" searches for one on every chart
    name = f"{stem}_{service}_cost.png"
    _save(fig, out_dir / name)
    charts["cost"] = name
    return charts


def by_attention(report: Mapping[str, Any]) -> list[str]:
    """Services, the ones needing attention first: missed SLA, then lowest health score."""
    services = report["services"]
    return sorted(services, key=lambda s: (services[s]["sla"]["met"], services[s]["health"]["score"], s))


def fleet_markdown(report: Mapping[str, Any]) -> list[str]:
    """With several services: one line each, those needing attention first."""
    services = report["services"]
    lines = [f"## Fleet: {len(services)} services", "",
             "| service | health | SLA % | anomalies (high+critical) | threshold changes | projected $/month |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in by_attention(report):
        r = services[s]
        sev = r["anomalies"]["by_severity"]
        lines.append(f"| {s} | {r['health']['score']:.0f} ({r['health']['status']}) | {r['sla']['sla_percent']}"
                     f"{'' if r['sla']['met'] else ' MISSED'} | {r['anomalies']['total']} "
                     f"({sev.get('high', 0) + sev.get('critical', 0)}) | {len(r['thresholds']['changes'])} | "
                     f"{r['cost']['projected_monthly']:.0f} |")
    return lines + [""]


def render_charts_of(args: tuple) -> dict[str, str]:
    """render_charts(*args), for a process pool."""
    return render_charts(*args)


def to_markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# NeuroPilot daily report — {report['date']}", ""]
    if len(report["services"]) > 1:
        lines += fleet_markdown(report)
    if report.get("charted_services") is not None and len(report["charted_services"]) < len(report["services"]):
        lines += [f"_Charts below: the {len(report['charted_services'])} services needing attention most "
                  f"({', '.join(report['charted_services'])})._", ""]
    for service in by_attention(report) if len(report["services"]) > 1 else report["services"]:
        r = report["services"][service]
        h, cost, sla, learn = r["health"], r["cost"], r["sla"], r["learning"]
        lines += [
            f"## {service}: health {h['score']:.0f} ({h['status']})", "",
            f"- SLA {sla['sla_percent']} % (target {sla['target']} %) — {'met' if sla['met'] else 'MISSED'}",
            f"- Cost today ${cost['today']:.2f}; projected ${cost['projected_monthly']:.0f}/month vs budget "
            f"${cost['budget']:.0f} ({cost['variance_percent']:+.0f} %, {cost['status'].replace('_', ' ')})",
            f"- Anomalies: {r['anomalies']['total']} "
            + ", ".join(f"{k} {v}" for k, v in r["anomalies"]["by_severity"].items() if v),
            f"- Scaling actions: {len(r['scaling_actions'])}; instance-hours {r['instance_hours']}",
            f"- Learning: model {learn['model_version'] or '—'} ({learn['status']}, loss "
            f"{learn['loss'] if learn['loss'] is None else round(learn['loss'], 4)}), policy phase {learn['policy_phase']}",
            "",
            "| metric | last 24 h | previous 24 h | change | 7-day baseline | vs baseline |",
            "| --- | ---: | ---: | --- | ---: | --- |",
        ]
        for metric, t in r["trends"].items():
            lines.append(f"| {METRIC_LABELS.get(metric, metric)} | {_fmt(t['last_24h'])} | {_fmt(t['previous_24h'])} | "
                         f"{t['direction']} ({_fmt(t['change_pct'])} %) | {_fmt(t['baseline_7d'])} | "
                         f"{t['vs_baseline_direction']} |")
        lines.append("")
        if r["thresholds"]["changes"]:
            lines.append("**Thresholds changed**")
            lines += [f"- {c['partition']}: {c['name']} {c['from']} → {c['to']} "
                      f"({'applied' if c.get('applied') else 'not applied'}) — {c['reason']}"
                      for c in r["thresholds"]["changes"]]
            lines.append("")
        if r["anomalies"]["top"]:
            lines.append("**Top anomalies**")
            lines += [f"- {a.get('ts', '')} {a.get('metric', '')} **{a.get('severity', '')}**: {a.get('explanation', '')}"
                      for a in r["anomalies"]["top"][:5]]
            lines.append("")
        for o in r.get("human_overrides", []):
            lines.append(f"- Human override: {o['var']} {o['old']} → {o['value']} by {o['author']} (held until "
                         f"{str(o['held_until'])[:16]})")
        if r["recommendations"]:
            lines.append("**Recommendations**")
            lines += [f"- {rec}" for rec in r["recommendations"]]
            lines.append("")
    return "\n".join(lines)


def to_html(report: Mapping[str, Any], charts: Mapping[str, Mapping[str, str]]) -> str:
    import markdown_it  # ships with Dagster's dependencies (markdown-it-py)

    body = markdown_it.MarkdownIt("commonmark").enable("table").render(to_markdown(report))
    figures = []
    for service, files in charts.items():
        figures.append(f"<h2>{html.escape(service)}: charts</h2>")
        figures += [f'<figure><img src="{html.escape(f)}" alt="{html.escape(service)} {html.escape(name)}">'
                    f"</figure>" for name, f in files.items()]
    return ("<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            "content='width=device-width, initial-scale=1'>"
            f"<title>NeuroPilot daily report {html.escape(report['date'])}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:920px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px}"
            "img{max-width:100%}figure{margin:0.5em 0}</style></head><body>"
            + body + "".join(figures)
            # Lets a headless browser (and the tests) tell whether every chart loaded.
            + "<script>window.addEventListener('load',function(){var i=Array.prototype.slice.call(document.images);"
              "document.body.setAttribute('data-charts',i.length);document.body.setAttribute('data-charts-loaded',"
              "i.filter(function(x){return x.complete&&x.naturalWidth>0}).length)})</script></body></html>")


def write_html_report(path: Path, report: Mapping[str, Any], charts: Mapping[str, Mapping[str, str]]) -> None:
    atomic_write_text(path, to_html(report, charts))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    return f"{v:,.2f}" if isinstance(v, (int, float)) else str(v)
