"""anomalies (and critical_alerts): the four detectors over one window, with explanations."""


import json

import dagster as dg
import numpy as np
import pandas as pd

from ..core import detectors, shape
from ..core.atomic import atomic_write_json
from ..core.features import category_codes, last_rows
from ..core.gmm import ModelFileError, sklearn_on_one_thread
from ..core.telemetry import METRIC_COLUMNS
from ..resources.neuropilot import NeuroPilotResource
from ..storage.reports import report_store
from .common import (
    RAW_TABLE, WAREHOUSE_POOL, WHOLE_RANGE_IN_ONE_RUN, by_service, each_partition, previous_window_unfinished,
    rows_to_replace, run_services, services_in_window, table_metadata,
)
from .model import MODEL_FEATURES
from .partitions import previous_day, previous_window, previous_window_key, six_hourly_partitions, window_bounds

ANOMALIES_TABLE = "anomalies"
DETECTOR_STATE = "detectors"
SEVERITIES = ("critical", "high", "medium", "low")


def detector_config(cfg) -> "detectors.DetectorConfig":
    return detectors.DetectorConfig(sensitivity=cfg.anomaly_sensitivity)


def min_deviations(cfg, ids: list[str]) -> np.ndarray:
    """Per series ("service/metric"), the configured anomaly_min_deviation of its metric (0: none)."""
    return np.array([float(cfg.anomaly_min_deviation.get(i.rsplit("/", 1)[-1], 0.0)) for i in ids])


def minute_grid(raw: pd.DataFrame, services: list[str], start: pd.Timestamp, end: pd.Timestamp,
                metrics: tuple[str, ...] = METRIC_COLUMNS):
    """(series ids, values[n_series, n_minutes], timestamps): one row per (service, metric), in
    service-then-metric order; minutes with no sample (or a non-finite one) are NaN."""
    ts = pd.date_range(start, end - pd.Timedelta(minutes=1), freq="1min")
    ids = [f"{service}/{metric}" for service in services for metric in metrics]
    cube = np.full((len(services), len(metrics), len(ts)), np.nan)
    if len(raw) and len(services):
        # Integer (service, minute) keys rather than drop_duplicates and a Categorical on the
        # service strings (3 days of 100 services for the forecast: 432,000 rows).
        s = category_codes(raw["service"], services)
        m = ((raw["ts"] - start) // pd.Timedelta(minutes=1)).to_numpy()
        take = last_rows(s * len(ts) + m, np.flatnonzero((s >= 0) & (m >= 0) & (m < len(ts))))
        for j, metric in enumerate(metrics):
            if metric in raw:
                cube[s[take], j, m[take]] = raw[metric].to_numpy(dtype=float)[take]
    values = cube.reshape(len(services) * len(metrics), len(ts))
    np.copyto(values, np.nan, where=np.isinf(values))
    return ids, values, ts


def gmm_scores(neuropilot: NeuroPilotResource, cfg, raw: pd.DataFrame, services: list[str], ts: pd.DatetimeIndex,
               model_day: str) -> tuple[np.ndarray, dict[str, str]]:
    """Per service and minute, the model's z-like score (NaN where no model yet); plus the versions used."""
    store = neuropilot.models(cfg)
    scores = np.full((len(services), len(ts)), np.nan)
    used = {}
    in_force = store.versions_for(services, model_day)
    raw_of = by_service(raw)
    with sklearn_on_one_thread():
        for i, service in enumerate(services):
            found = in_force.get(service)
            if found is None:
                used[service] = "none (no model trained yet)"
                continue
            version, partition = found
            try:
                model = store.load(service, version)
            except ModelFileError as exc:
                raise dg.Failure(str(exc)) from exc
            g = raw_of.get(service, raw.iloc[0:0]).drop_duplicates("ts", keep="last").set_index("ts").reindex(ts)
            scores[i] = model.anomaly_score(g[list(MODEL_FEATURES)].to_numpy(dtype=float))
            used[service] = f"{version} (trained {partition})"
    return scores, used


def _merge_other_services_state(existing, services, state, ids, joint_since, joint_ids, config):
    """(state, ids, joint_since, joint_ids) of `services` plus the rows of every other service
    that `existing` (this window's stored state, or None) holds."""
    if existing is None:
        return state, ids, joint_since, joint_ids
    old_ids = json.loads(str(existing.pop("__series_ids__")))
    old_joint = json.loads(str(existing.pop("__joint_ids__")))
    old_since = existing.pop("__joint_since__")
    keep = [i for i, sid in enumerate(old_ids) if sid.split("/")[0] not in services]
    keep_joint = [i for i, sid in enumerate(old_joint) if sid.split("/")[0] not in services]
    # A key the stored state lacks (written before that detector existed) starts cold for the others.
    fresh = detectors.new_state(len(keep), config)
    merged = {k: np.concatenate([existing[k][keep] if k in existing else fresh[k], v]) for k, v in state.items()}
    return (merged, [old_ids[i] for i in keep] + list(ids), np.concatenate([old_since[keep_joint], joint_since]),
            [old_joint[i] for i in keep_joint] + list(joint_ids))


@dg.asset(
    partitions_def=six_hourly_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="detect",
    kinds={"parquet"},
    pool=WAREHOUSE_POOL,
    deps=[
        "raw_metrics", "metric_features",
        dg.AssetDep("anomaly_model", partition_mapping=previous_day),
        dg.AssetDep("anomalies", partition_mapping=previous_window),
    ],
    description="z-score, EWMA, seasonal-residual and GMM-likelihood detectors per service and metric, combined into "
                "anomaly records with a severity and an explanation (which detectors fired, value, baseline, "
                "deviation). Detector state is carried from the previous window, so verdicts are causal.",
)
def anomalies(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    carried: dict = {}  # over a range, the previous window's whole detector state (see _shape_state)
    return each_partition(context, lambda key: _window_anomalies(context, neuropilot, key, carried))


def _shape_state(wh, state: dict, ids: list[str], services: list[str], start: pd.Timestamp, prev_key: str,
                 carried: dict, config) -> tuple[dict, str]:
    """The shape detector's week of buckets, which is not stored: the previous window's, when
    this run just computed it for the same series, else rebuilt from the raw metrics of the
    week before the window. Both give exactly the same state (shape.py)."""
    if carried.get("key") == prev_key and carried.get("ids") == ids:
        return {**state, **{k: carried["state"][k] for k in shape.REBUILT}}, "carried in this run"
    history_start = start - pd.Timedelta(minutes=detectors.shape_history_minutes(config))
    raw = wh.read_window(RAW_TABLE, history_start, start, columns=["service", "ts", *METRIC_COLUMNS],
                         services=services)
    _, history, history_ts = minute_grid(raw, services, history_start, start)
    return detectors.rebuild_shape_state(state, history, history_ts, config), "rebuilt from raw_metrics"


def _window_anomalies(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str,
                      carried: dict) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    start, end = window_bounds(key)
    wh, store = neuropilot.warehouse(cfg), neuropilot.state(cfg)
    services = run_services(context, cfg, wh, [key])
    raw = wh.read_window(RAW_TABLE, start, end, columns=["service", "ts", *METRIC_COLUMNS], services=services)
    if raw.empty:
        raise dg.Failure(f"raw_metrics has no rows for {key}: materialize raw_metrics for it first.")
    ids, values, ts = minute_grid(raw, services, start, end)
    model_day = (start - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    joint, models_used = gmm_scores(neuropilot, cfg, raw, services, ts, model_day)
    joint_ids = [f"{service}/joint" for service in services]
    config = detector_config(cfg)

    # Detector state from the end of the previous window (per series, realigned if the set of
    # services changed); none means a cold start, during which nothing alarms.
    prev_key = previous_window_key(key)
    prev_arrays = store.read_arrays(DETECTOR_STATE, prev_key)
    if prev_arrays is None and (collected := services_in_window(wh, prev_key)):
        raise previous_window_unfinished(prev_key, collected, "detector state")
    state, joint_since = None, None
    if prev_arrays is not None:
        prev_ids = json.loads(str(prev_arrays.pop("__series_ids__")))
        prev_joint = json.loads(str(prev_arrays.pop("__joint_ids__")))
        prev_since = dict(zip(prev_joint, prev_arrays.pop("__joint_since__")))
        joint_since = np.array([prev_since.get(j, np.inf) for j in joint_ids])
        state = detectors.align_state(prev_arrays, prev_ids, ids, config)
        state, shape_source = _shape_state(wh, state, ids, services, start, prev_key, carried, config)
    result, full_state = detectors.detect_chunk(values, ts, state, config, copy_state=False,
                                                min_deviation=min_deviations(cfg, ids))
    carried.update(key=key, ids=list(ids), state=full_state)
    new_state = detectors.persisted_state(full_state)
    joint_records, joint_since = detectors.joint_alarms(joint, joint_ids, ts, joint_since, config)
    state_ids, state_joint_ids = ids, joint_ids
    if rows_to_replace(context, services) is not None:
        # A run for some services: keep the other services' detector state of this window.
        new_state, state_ids, joint_since, state_joint_ids = _merge_other_services_state(
            store.read_arrays(DETECTOR_STATE, key), services, new_state, ids, joint_since, joint_ids, config)
    store.write_arrays(DETECTOR_STATE, key, {
        **new_state, "__series_ids__": np.array(json.dumps(state_ids)),
        "__joint_ids__": np.array(json.dumps(state_joint_ids)), "__joint_since__": joint_since,
    })

    records = detectors.anomaly_records(result, ids, ts, config) + joint_records
    table = pd.DataFrame(records, columns=detectors.RECORD_COLUMNS)
    if not table.empty:
        table.insert(0, "partition", key)
        table.insert(1, "service", table["series"].str.split("/").str[0])
        table.insert(2, "metric", table["series"].str.split("/").str[1])
        table = table.drop(columns=["series"])
    else:
        table = pd.DataFrame(columns=["partition", "service", "metric", *[c for c in detectors.RECORD_COLUMNS if c != "series"]])
    info = wh.write_partition(ANOMALIES_TABLE, key, table, replace_services=rows_to_replace(context, services))
    counts = {s: int((table["severity"] == s).sum()) for s in SEVERITIES}
    return dg.MaterializeResult(metadata={
        **table_metadata(info, table, services),
        "by_severity": dg.MetadataValue.json(counts),
        "critical_count": counts["critical"],
        "model_versions": dg.MetadataValue.json(models_used),
        "detector_state": f"carried from {prev_key}; shape buckets {shape_source}" if state is not None
        else "cold start (no state before this window)",
    })


@dg.asset(
    partitions_def=six_hourly_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="detect",
    kinds={"json"},
    deps=["anomalies"],
    description="The critical anomalies of one window with their explanations, written as an alert file "
                "(launched at once by critical_anomaly_sensor).",
)
def critical_alerts(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _window_critical_alerts(context, neuropilot, key))


def _window_critical_alerts(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    table = neuropilot.warehouse(cfg).read_partitions(ANOMALIES_TABLE, [key])
    critical = table[table["severity"] == "critical"] if not table.empty else table
    alert = {
        "partition": key,
        "critical_count": int(len(critical)),
        "anomalies": json.loads(critical.to_json(orient="records", date_format="iso")) if len(critical) else [],
    }
    name = f"alerts/critical_{key.replace(':', '')}.json"
    atomic_write_json(cfg.reports_dir / name, alert)
    reports = report_store(cfg)
    reports.publish(name)
    from .deliver import slack_webhook

    webhook = slack_webhook(cfg)
    status = "not configured (set SLACK_WEBHOOK_URL)"
    if webhook is not None and len(critical):
        lines = [f"• {r['service']} {r['metric']} at {str(r['ts'])[11:16]}: {r['explanation']}"
                 for _, r in critical.head(10).iterrows()]
        delivery = webhook.post({"text": f":red_circle: NeuroPilot: {len(critical)} critical anomalies in {key}",
                                 "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text":
                                             f"*:red_circle: {len(critical)} critical anomalies in {key}*\n"
                                             + "\n".join(lines)}}]}, f"critical alert {key}")
        status = delivery.status
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(reports.display(name)),
                                          "critical_count": len(critical),
                                          "slack": status})


FORECAST_TABLE = "forecast_alerts"
# What a forecast is compared with: the autoscaler's own trigger, the SLO, the seed's error line.
FORECAST_LIMITS = {"cpu_percent": "cpu_scale_up_threshold", "p95_latency_ms": "slo_p95_ms", "error_rate_percent": 2.0}


@dg.asset(
    partitions_def=six_hourly_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="detect",
    kinds={"statsmodels"},
    pool=WAREHOUSE_POOL,
    # The limits are the thresholds in force in the window: those the previous window's apply left.
    deps=["raw_metrics", dg.AssetDep("terraform_vars", partition_mapping=previous_window)],
    description="Predictive alerts: a Holt-Winters forecast (24 h seasonality) of the next 6 h of CPU, p95 latency "
                "and error rate per service, and when it will cross the scale-up threshold, the SLO or 2 % errors.",
)
def forecast_alerts(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _window_forecast(context, neuropilot, key))


def _window_forecast(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    from ..core.forecast import Forecast, first_crossing, forecast_grid
    from .decide import thresholds_before  # decide imports this module

    cfg = neuropilot.cfg()
    start, end = window_bounds(key)
    wh, state = neuropilot.warehouse(cfg), neuropilot.state(cfg)
    services = run_services(context, cfg, wh, [key])
    metrics = tuple(FORECAST_LIMITS)
    history_start = end - pd.Timedelta(days=3)
    raw = wh.read_window(RAW_TABLE, history_start, end, services=services, columns=["service", "ts", *metrics])
    # Every service and metric at once: one (series x minutes) grid, one vectorised forecast.
    _, grid, _ = minute_grid(raw, services, history_start, end, metrics)
    present = set(raw["service"].unique()) if not raw.empty else set()
    forecast = forecast_grid(grid, end, horizon_minutes=360)
    rows = []
    in_force_of = thresholds_before(cfg, state, [s for s in services if s in present], key)
    for i, service in enumerate(services):
        if forecast is None or service not in present:
            continue
        in_force, _ = in_force_of[service]
        for j, (metric, limit) in enumerate(FORECAST_LIMITS.items()):
            values = forecast.values[i * len(metrics) + j]
            if not np.isfinite(values).all():
                continue
            threshold = float(getattr(in_force, limit) if limit == "cpu_scale_up_threshold"
                              else cfg.slo_p95_ms if limit == "slo_p95_ms" else limit)
            hit = first_crossing(Forecast(forecast.ts, values), threshold)
            rows.append({"partition": key, "service": service, "metric": metric, "threshold": threshold,
                         "forecast_max": float(np.max(values)), "crosses_at": hit[0] if hit else None,
                         "forecast_at_crossing": hit[1] if hit else None})
    table = pd.DataFrame(rows, columns=["partition", "service", "metric", "threshold", "forecast_max", "crosses_at",
                                        "forecast_at_crossing"])
    info = wh.write_partition(FORECAST_TABLE, key, table, replace_services=rows_to_replace(context, services))
    alerts = table[table["crosses_at"].notna()] if not table.empty else table
    return dg.MaterializeResult(metadata={
        **table_metadata(info, table, services),
        "alerts": len(alerts),
        "forecast": "needs two days of history" if table.empty else "next 6 h",
    })
