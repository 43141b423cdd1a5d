"""raw_metrics: one 6-hour window of per-minute telemetry per service, as a Parquet partition."""


import dagster as dg

from ..core.quality import mark_gaps, series_changes, window_quality
from ..core.telemetry import METRIC_COLUMNS
from ..resources.neuropilot import NeuroPilotResource
from ..resources.sources import MetricsSourceResource
from .common import RAW_TABLE, WAREHOUSE_POOL, WHOLE_RANGE_IN_ONE_RUN, each_partition, narrow_to_tag, selected_services, table_metadata
from .partitions import previous_window_key, six_hourly_partitions, window_bounds

@dg.asset(
    partitions_def=six_hourly_partitions,
    group_name="ingest",
    kinds={"parquet", "duckdb"},
    pool=WAREHOUSE_POOL,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    check_specs=[
        dg.AssetCheckSpec("complete_minutes", asset="raw_metrics",
                          description="Every service reports every minute of the window."),
        dg.AssetCheckSpec("finite_values", asset="raw_metrics",
                          description="No NaN or infinite metric values.", blocking=False),
        dg.AssetCheckSpec("no_counter_resets", asset="raw_metrics",
                          description="No request counter reset (a process restart) in the window."),
        dg.AssetCheckSpec("stable_series", asset="raw_metrics",
                          description="No service that reported in the previous window has vanished."),
    ],
    description="Per-minute telemetry of every watched service for one 6-hour window "
                "(warehouse table raw_metrics; re-materializing replaces the partition atomically).",
)
def raw_metrics(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource,
                metrics_source: MetricsSourceResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _collect_window(context, neuropilot, metrics_source, key))


def _collect_window(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource,
                    metrics_source: MetricsSourceResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    start, end = window_bounds(key)
    only = selected_services(context)
    if only is not None and cfg.services:
        only = narrow_to_tag(context, list(cfg.services))  # refuses services the config does not watch
    collected = metrics_source.collect(cfg, neuropilot.state(cfg), start, end, key,
                                       previous_window_key(key), only)
    frame = collected.frame
    if frame.empty:
        raise dg.Failure(f"No metrics returned for {'any service' if only is None else ', '.join(only)} "
                         f"in window {start} – {end}.")
    frame = mark_gaps(frame, METRIC_COLUMNS)
    # Configured services, else discovered from the source's `service` label; narrowed by the run tag.
    services = [s for s in (list(cfg.services) or sorted(frame["service"].unique())) if only is None or s in only]
    quality = window_quality(frame, METRIC_COLUMNS, start, end, services)
    wh = neuropilot.warehouse(cfg)
    before = wh.read_partitions(RAW_TABLE, [previous_window_key(key)], columns=["service"])
    if only is not None and not before.empty:
        before = before[before["service"].isin(only)]
    changes = series_changes(sorted(before["service"].unique()) if not before.empty else [],
                             sorted(frame["service"].unique())) if not before.empty else {"appeared": [], "disappeared": []}
    info = wh.write_partition(RAW_TABLE, key, frame, replace_services=only)
    missing, bad = quality["missing_minutes"], quality["nan_values"] + quality["inf_values"]
    return dg.MaterializeResult(
        metadata={
            **table_metadata(info, frame, services),
            "window": f"{start.isoformat()} – {end.isoformat()}",
            "missing_minutes": missing,
            "nan_or_inf_values": bad,
            "duplicate_timestamps": quality["duplicate_timestamps"],
            "gap_minutes": int(frame["gap"].sum()),
            "counter_resets": dg.MetadataValue.json(collected.counter_resets),
            "services_appeared": dg.MetadataValue.json(changes["appeared"]),
            "services_disappeared": dg.MetadataValue.json(changes["disappeared"]),
            "source_notes": dg.MetadataValue.json(collected.notes),
        },
        check_results=[
            dg.AssetCheckResult(check_name="complete_minutes", passed=missing == 0,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"missing_minutes": missing, "absent_services": quality["absent_services"]}),
            dg.AssetCheckResult(check_name="finite_values", passed=bad == 0, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"nan_values": quality["nan_values"], "inf_values": quality["inf_values"]}),
            dg.AssetCheckResult(check_name="no_counter_resets", passed=not any(collected.counter_resets.values()),
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={"resets": dg.MetadataValue.json(collected.counter_resets)}),
            dg.AssetCheckResult(check_name="stable_series", passed=not changes["disappeared"],
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata={k: dg.MetadataValue.json(v) for k, v in changes.items()}),
        ],
    )
