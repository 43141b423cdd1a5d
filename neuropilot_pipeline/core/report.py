"""Daily intelligence report maths, by the seed's rules (pure: frames in, dict out).

Schema (`schema_version` 1), one object per report date:
{
  "schema_version": 1, "date": "YYYY-MM-DD", "window": {"start", "end"},
  "services": {
    "<service>": {
      "health": {"score", "status", "components": {"latency", "errors", "cpu", "memory"}, "inputs": {...}},
      "key_metrics": {"<metric>": {"mean", "p95", "max"}},
      "trends": {"<metric>": {"last_24h", "previous_24h", "change_pct", "direction",
                               "baseline_7d", "vs_baseline_pct", "vs_baseline_direction"}},
      "sla": {"good_minutes", "minutes", "sla_percent", "target", "met"},
      "anomalies": {"total", "by_severity": {...}, "top": [anomaly records with explanations]},
      "scaling_actions": [{"ts", "from", "to"}], "instance_hours",
      "thresholds": {"changes": [{"partition", "name", "from", "to", "reason"}], "current": {...}},
      "cost": {"today", "daily_average", "projected_monthly", "budget", "variance_percent", "status"},
      "learning": {"model_version", "loss", "status", "policy_phase", "components"},
      "recommendations": [str]
    }
  }
}
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .gmm import learning_status

SCHEMA_VERSION = 1
HEALTH_WEIGHTS = {"latency": 0.30, "errors": 0.30, "cpu": 0.20, "memory": 0.20}
TREND_METRICS = ("cpu_percent", "memory_percent", "p95_latency_ms", "error_rate_percent",
                 "request_rate_per_s", "db_query_p95_ms", "instance_count", "cost_usd")
SEVERITIES = ("critical", "high", "medium", "low")


def health_score(p95_ms: float, error_rate_percent: float, cpu_percent: float, memory_percent: float) -> dict[str, Any]:
    components = {
        "latency": max(0.0, 100.0 - p95_ms / 4.0),
        "errors": max(0.0, 100.0 - error_rate_percent * 20.0),
        "cpu": max(0.0, 100.0 - cpu_percent),
        "memory": max(0.0, 100.0 - memory_percent),
    }
    score = sum(HEALTH_WEIGHTS[k] * v for k, v in components.items())
    status = "healthy" if score >= 80 else "degraded" if score >= 70 else "unhealthy"
    return {
        "score": round(score, 2),
        "status": status,
        "components": {k: round(v, 2) for k, v in components.items()},
        "inputs": {"p95_latency_ms": p95_ms, "error_rate_percent": error_rate_percent,
                   "cpu_percent": cpu_percent, "memory_percent": memory_percent},
    }


def trend_direction(change_pct: float | None) -> str:
    if change_pct is None or not math.isfinite(change_pct):
        return "unknown"
    if change_pct > 10.0:
        return "increasing"
    if change_pct < -10.0:
        return "decreasing"
    return "stable"


def pct_change(current: float, reference: float) -> float | None:
    if reference is None or not math.isfinite(reference) or not math.isfinite(current):
        return None
    if reference == 0:
        return 0.0 if current == 0 else None
    return (current - reference) / abs(reference) * 100.0


def trends(day: pd.DataFrame, previous_day: pd.DataFrame, baseline_7d: pd.DataFrame,
           metrics: Iterable[str] = TREND_METRICS) -> dict[str, dict[str, Any]]:
    out = {}
    for m in metrics:
        cur = _mean(day, m)
        prev = _mean(previous_day, m)
        base = _mean(baseline_7d, m)
        ch = pct_change(cur, prev) if prev is not None else None
        vb = pct_change(cur, base) if base is not None else None
        out[m] = {
            "last_24h": cur, "previous_24h": prev, "change_pct": _round(ch), "direction": trend_direction(ch),
            "baseline_7d": base, "vs_baseline_pct": _round(vb), "vs_baseline_direction": trend_direction(vb),
        }
    return out


def cost_projection(daily_costs: Iterable[float], budget: float, today_cost: float) -> dict[str, Any]:
    costs = [c for c in daily_costs if c is not None and math.isfinite(c)]
    daily_avg = float(np.mean(costs)) if costs else today_cost
    projected = daily_avg * 30.0
    variance = (projected - budget) / budget * 100.0
    status = "over_budget" if variance > 20 else "under_budget" if variance < -20 else "on_budget"
    return {"today": round(today_cost, 4), "daily_average": round(daily_avg, 4), "projected_monthly": round(projected, 2),
            "budget": budget, "variance_percent": round(variance, 1), "status": status}


def recommendations(health: float, p95_ms: float, error_rate_percent: float, cost_variance_percent: float,
                    cpu_percent: float) -> list[str]:
    recs = []
    if health < 70:
        recs.append(f"Health score {health:.0f} < 70: review application logs for errors and consider scaling up.")
    if p95_ms > 200:
        recs.append(f"p95 latency {p95_ms:.0f} ms > 200 ms: add database indexes for slow queries, or scale out.")
    if error_rate_percent > 2:
        recs.append(f"Error rate {error_rate_percent:.2f} % > 2 %: investigate recent deployments.")
    if abs(cost_variance_percent) > 20:
        recs.append(f"Cost projection is {cost_variance_percent:+.0f} % against budget: review the scaling thresholds.")
    if cpu_percent > 80:
        recs.append(f"CPU {cpu_percent:.0f} % > 80 %: scale up or optimise hot code paths.")
    elif cpu_percent < 30:
        recs.append(f"CPU {cpu_percent:.0f} % < 30 %: capacity is idle; scale down (raise cpu_scale_down_threshold).")
    return recs


def scaling_actions(day: pd.DataFrame) -> list[dict[str, Any]]:
    if day.empty:
        return []
    counts = day["instance_count"].to_numpy()
    ts = day["ts"].to_numpy()
    idx = np.flatnonzero(np.diff(counts) != 0) + 1
    return [{"ts": pd.Timestamp(ts[i]).isoformat(), "from": float(counts[i - 1]), "to": float(counts[i])} for i in idx]


def service_report(
    service: str,
    day: pd.DataFrame,
    previous_day: pd.DataFrame,
    baseline_7d: pd.DataFrame,
    anomalies: pd.DataFrame,
    decisions: pd.DataFrame,
    daily_costs: Iterable[float],
    model: Mapping[str, Any] | None,
    sla_target: float,
    slo_p95_ms: float,
    cost_budget: float,
    max_top_anomalies: int = 10,
) -> dict[str, Any]:
    p95 = _mean(day, "p95_latency_ms") or 0.0
    err = _mean(day, "error_rate_percent") or 0.0
    cpu = _mean(day, "cpu_percent") or 0.0
    mem = _mean(day, "memory_percent") or 0.0
    health = health_score(p95, err, cpu, mem)
    good = int((day["p95_latency_ms"] <= slo_p95_ms).sum()) if not day.empty else 0
    minutes = len(day)
    sla_pct = 100.0 * good / minutes if minutes else float("nan")
    today_cost = float(day["cost_usd"].sum()) if not day.empty else 0.0
    cost = cost_projection(daily_costs, cost_budget, today_cost)
    by_sev = {s: int((anomalies["severity"] == s).sum()) if not anomalies.empty else 0 for s in SEVERITIES}
    top = []
    if not anomalies.empty:
        order = anomalies.assign(_rank=anomalies["severity"].map({s: i for i, s in enumerate(SEVERITIES)}))
        for _, row in order.sort_values(["_rank", "score"], ascending=[True, False]).head(max_top_anomalies).iterrows():
            top.append({k: _jsonable(row[k]) for k in ("ts", "metric", "severity", "score", "value", "explanation") if k in row})
    changes, current = [], {}
    if not decisions.empty:
        for _, row in decisions.sort_values("partition").iterrows():
            for name, old, new in _threshold_changes(row):
                changes.append({"partition": row["partition"], "name": name, "from": old, "to": new,
                                "reason": row.get("reason", ""), "applied": bool(row.get("applied", False))})
        last = decisions.sort_values("partition").iloc[-1]
        current = {k[len("new_"):]: _jsonable(last[k]) for k in last.index if k.startswith("new_")}
    loss = float(model["loss"]) if model and model.get("loss") is not None else None
    learning = {
        "model_version": model.get("version") if model else None,
        "model_partition": model.get("partition") if model else None,
        "loss": loss,
        "status": learning_status(loss) if loss is not None else "no model yet",
        "components": model.get("n_components") if model else None,
        "policy_phase": (decisions.sort_values("partition").iloc[-1].get("phase") if not decisions.empty else None),
    }
    return {
        "health": health,
        "key_metrics": {m: _describe(day, m) for m in TREND_METRICS},
        "trends": trends(day, previous_day, baseline_7d),
        "sla": {"good_minutes": good, "minutes": minutes, "sla_percent": _round(sla_pct, 4), "target": sla_target,
                "met": bool(minutes and sla_pct >= sla_target)},
        "anomalies": {"total": int(len(anomalies)), "by_severity": by_sev, "top": top},
        "scaling_actions": scaling_actions(day),
        "instance_hours": round(float(day["instance_count"].sum()) / 60.0, 2) if not day.empty else 0.0,
        "thresholds": {"changes": changes, "current": current},
        "cost": cost,
        "learning": learning,
        "recommendations": recommendations(health["score"], p95, err, cost["variance_percent"], cpu),
    }


def _threshold_changes(row: pd.Series) -> list[tuple[str, Any, Any]]:
    out = []
    for key in row.index:
        if key.startswith("new_"):
            name = key[len("new_"):]
            old = row.get("old_" + name)
            if old is not None and _jsonable(old) != _jsonable(row[key]):
                out.append((name, _jsonable(old), _jsonable(row[key])))
    return out


def _finite_values(df: pd.DataFrame | None, col: str) -> np.ndarray:
    """The column's finite numbers (numpy: the report runs this ~30 times per service, and a
    hundred services made pandas' per-call overhead seconds per report)."""
    if df is None or df.empty or col not in df:
        return np.empty(0)
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return v[np.isfinite(v)]


def _mean(df: pd.DataFrame, col: str) -> float | None:
    v = _finite_values(df, col)
    return round(float(v.mean()), 4) if v.size else None


def _describe(df: pd.DataFrame, col: str) -> dict[str, float | None]:
    v = _finite_values(df, col)
    if not v.size:
        return {"mean": None, "p95": None, "max": None}
    return {"mean": round(float(v.mean()), 4), "p95": round(float(np.quantile(v, 0.95)), 4), "max": round(float(v.max()), 4)}


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def _jsonable(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v
