"""metric_features: trailing baselines, EWMA, z-scores and seasonal decomposition per metric."""


import dagster as dg
import pandas as pd

from ..core.features import HISTORY_DAYS, compute_features
from ..core.telemetry import METRIC_COLUMNS
from ..resources.neuropilot import NeuroPilotResource
from .common import RAW_TABLE, WAREHOUSE_POOL, WHOLE_RANGE_IN_ONE_RUN, each_partition, rows_to_replace, run_services, table_metadata
from .partitions import six_hourly_partitions, window_bounds

FEATURES_TABLE = "metric_features"


@dg.asset(
    partitions_def=six_hourly_partitions,
    group_name="detect",
    kinds={"parquet", "pandas"},
    pool=WAREHOUSE_POOL,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    deps=["raw_metrics"],
    description="Per service and metric: trailing 24 h baseline (mean, std), EWMA (span 20), z-score and a causal "
                "24 h seasonal decomposition. Reads its history from the warehouse (bounded: 8 days).",
)
def metric_features(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _window_features(context, neuropilot, key))


def _window_features(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    start, end = window_bounds(key)
    wh = neuropilot.warehouse(cfg)
    history_start = start - pd.Timedelta(days=HISTORY_DAYS)
    services = run_services(context, cfg, wh, [key])
    raw = wh.read_window(RAW_TABLE, history_start, end, columns=["service", "ts", *METRIC_COLUMNS],
                         services=services)
    if raw.empty or raw["ts"].max() < start:
        raise dg.Failure(f"raw_metrics has no rows for {key}: materialize raw_metrics for it first.")
    features = compute_features(raw, METRIC_COLUMNS, start, end)
    info = wh.write_partition(FEATURES_TABLE, key, features,
                              replace_services=rows_to_replace(context, services))
    history_minutes = int(raw["ts"].lt(start).sum() / max(1, len(services)))
    return dg.MaterializeResult(metadata={
        **table_metadata(info, features, services),
        "history_minutes_used": history_minutes,
        "mean_abs_zscore": float(features["zscore"].abs().mean()),
    })
