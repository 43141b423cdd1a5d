"""anomaly_model: a Gaussian mixture per service, retrained daily with warm start, versioned."""


import hashlib

import dagster as dg
import pandas as pd

from ..core.gmm import GMMSettings, InsufficientSamplesError, train_many
from ..resources.neuropilot import NeuroPilotResource
from ..storage.models import REGISTRY_TABLE
from .common import WAREHOUSE_POOL, WHOLE_RANGE_IN_ONE_RUN, each_partition, rows_to_replace, run_services
from .features import FEATURES_TABLE
from .partitions import daily_partitions, day_bounds, previous_day, windows_of_day

# The joint operating point of a service; cost is left out (it is instance_count times a price).
MODEL_FEATURES = ("cpu_percent", "memory_percent", "p95_latency_ms", "error_rate_percent",
                  "request_rate_per_s", "db_query_p95_ms", "instance_count")
# Heavy-tailed metrics are modelled in log space.
LOG_FEATURES = ("p95_latency_ms", "error_rate_percent", "request_rate_per_s", "db_query_p95_ms", "instance_count")


def training_matrices(features: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per service, the (minutes x MODEL_FEATURES) matrix of feature values; one reshape for all."""
    f = features[features["metric"].isin(MODEL_FEATURES)].dropna(subset=["value"])
    f = f.drop_duplicates(["service", "ts", "metric"], keep="last")
    wide = f.set_index(["service", "ts", "metric"])["value"].unstack("metric").reindex(columns=list(MODEL_FEATURES))
    return {str(service): g.droplevel("service").sort_index() for service, g in wide.groupby(level="service", sort=False)}


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="learn",
    kinds={"scikitlearn", "json"},
    pool=WAREHOUSE_POOL,
    # Each day warm-starts from the day before's version: declared, so a backfill trains the
    # days in order and the UI's lineage shows the chain.
    deps=["metric_features", dg.AssetDep("anomaly_model", partition_mapping=previous_day)],
    check_specs=[dg.AssetCheckSpec("every_service_trained", asset="anomaly_model",
                                   description="Each watched service got a model version today.")],
    description="Per service, a GaussianMixture (with its scaler) trained on the lookback_hours of features "
                "ending at the end of this day (scores the next day), warm-started from the previous version. Versions are JSON, "
                "content-hashed, listed in the model_registry table.",
)
def anomaly_model(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _train_day(context, neuropilot, key))


def _train_day(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    # Trained on the day's data (lookback ending at its midnight); it scores the next day.
    _, window_end = day_bounds(key)
    window_start = window_end - pd.Timedelta(hours=cfg.model.lookback_hours)
    wh, store = neuropilot.warehouse(cfg), neuropilot.models(cfg)
    services = run_services(context, cfg, wh, windows_of_day(key))
    features = wh.read_window(FEATURES_TABLE, window_start, window_end, columns=["service", "metric", "ts", "value"],
                              services=services)
    settings = GMMSettings(n_components=cfg.model.n_components, min_components=cfg.model.min_components,
                           max_components=cfg.model.max_components, min_samples=cfg.model.min_samples,
                           max_iter=cfg.model.max_iter, drift_threshold=cfg.model.drift_threshold)
    # Warm start from the newest version registered before this day.
    previous_day_key = (window_end - pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    previous_versions = store.versions_for(services, previous_day_key)
    rows, failures, per_service = [], {}, {}
    matrices = training_matrices(features) if not features.empty else {}
    empty = pd.DataFrame(columns=list(MODEL_FEATURES))
    jobs = []
    for service in services:
        found = previous_versions.get(service)
        previous = store.load(service, found[0]) if found else None
        jobs.append((service, matrices.get(service, empty).to_numpy(dtype=float), previous,
                     {"service": service, "partition": key,
                      "window": [window_start.isoformat(), window_end.isoformat()]}))
    trained = train_many(jobs, MODEL_FEATURES, settings, log_features=LOG_FEATURES)
    for service, _, previous, _ in jobs:
        outcome = trained[service]
        if isinstance(outcome, InsufficientSamplesError):
            failures[service] = str(outcome)
            continue
        model, report = outcome
        store.save(service, model)
        row = {
            "partition": key, "service": service, "version": model.version,
            "previous_version": previous.version if previous else None,
            "trained_at": pd.Timestamp.now(tz="UTC"), "window_start": window_start, "window_end": window_end,
            "samples": report.samples, "loss": report.loss, "converged": report.converged, "n_iter": report.n_iter,
            "n_components": report.n_components, "mode": report.mode, "drift_score": report.drift_score,
            "learning_status": report.learning_status, "mean_nll": report.mean_nll, "bic": report.bic,
            "flag_rate": report.flag_rate, "score_p50": report.score_p50, "score_p95": report.score_p95,
            "score_p99": report.score_p99,
        }
        rows.append(row)
        per_service[service] = {k: row[k] for k in ("version", "previous_version", "mode", "samples", "loss",
                                                    "learning_status", "n_components", "converged", "flag_rate")}
    if not rows:
        raise dg.Failure(
            description="; ".join(failures.values()),
            metadata={"window": f"{window_start.isoformat()} – {window_end.isoformat()}"},
        )
    wh.write_partition(REGISTRY_TABLE, key, pd.DataFrame(rows),
                       replace_services=rows_to_replace(context, services))
    versions = ",".join(f"{r['service']}={r['version']}" for r in rows)
    data_version = rows[0]["version"] if len(rows) == 1 else hashlib.sha256(versions.encode()).hexdigest()[:16]
    first = rows[0]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(data_version),
        metadata={
            "model_version": first["version"] if len(rows) == 1 else versions,
            "training_window": f"{window_start.isoformat()} – {window_end.isoformat()}",
            "samples": int(sum(r["samples"] for r in rows)),
            "loss": float(max(r["loss"] for r in rows)),
            "learning_status": first["learning_status"],
            "components": int(first["n_components"]),
            "mode": first["mode"],
            "per_service": dg.MetadataValue.json(per_service),
            "services": dg.MetadataValue.json(services),
        },
        check_results=[dg.AssetCheckResult(check_name="every_service_trained", passed=not failures,
                                           severity=dg.AssetCheckSeverity.WARN,
                                           metadata={"untrained": dg.MetadataValue.json(failures)})],
    )
