"""`neuropilot explain`: the chain a threshold decision came from, read from the Dagster instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd


@dataclass
class Link:
    asset: str
    partition: str
    run_id: str | None
    when: str | None
    metadata: dict[str, Any]


def _latest(instance: dg.DagsterInstance, asset: str, partition: str, service: str | None = None) -> Link:
    """The newest materialization of the asset partition; with `service`, the newest one that
    computed that service's rows (a run for other services only does not count)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=50)
    for record in result.records:
        mat = record.asset_materialization
        meta = {k: getattr(v, "value", v) for k, v in (mat.metadata or {}).items()}
        covered = meta.get("services")
        if service is not None and covered is not None and service not in covered:
            continue
        when = pd.Timestamp(record.timestamp, unit="s", tz="UTC").isoformat(timespec="seconds")
        return Link(asset, partition, record.run_id, when, meta if service is None else _only(meta, service))
    return Link(asset, partition, None, None, {})


def _only(meta: dict[str, Any], service: str) -> dict[str, Any]:
    """Per-service metadata (dicts keyed by service) narrowed to one service."""
    return {k: {service: v[service]} if isinstance(v, dict) and service in v else v for k, v in meta.items()}


def explain(instance: dg.DagsterInstance, partition: str, service: str | None = None) -> list[Link]:
    """The decision for `partition` and everything it was computed from, newest materializations
    (with `service`: those that computed that service's rows)."""
    decision = _latest(instance, "threshold_decision", partition, service)
    if decision.run_id is None:
        raise LookupError(f"threshold_decision has no materialization for {partition} in this instance "
                          f"({instance.root_directory if hasattr(instance, 'root_directory') else 'instance'}).")
    m = decision.metadata
    chain = [_latest(instance, "terraform_vars", partition, service), decision,
             _latest(instance, "reward", m.get("reward_partition", partition), service),
             _latest(instance, "anomalies", m.get("anomalies_partition", partition), service)]
    model_partition = m.get("model_partition")
    if service is not None and service in (m.get("decisions") or {}):
        model_partition = m["decisions"][service].get("model_partition") or "none"
    if model_partition and model_partition != "none":
        chain.append(_latest(instance, "anomaly_model", model_partition, service))
    chain += [_latest(instance, "metric_features", partition, service),
              _latest(instance, "raw_metrics", m.get("raw_metrics_partition", partition), service)]
    return chain


KEY_METADATA = {
    "terraform_vars": ("mode", "applied", "status", "commits"),
    "threshold_decision": ("mode", "decisions", "model_version", "model_partition", "reward"),
    "reward": ("reward", "sla_percent", "sla_met", "projected_monthly_cost"),
    "anomalies": ("by_severity", "model_versions", "detector_state"),
    "anomaly_model": ("model_version", "per_service", "training_window", "samples", "loss", "learning_status", "mode"),
    "metric_features": ("dagster/row_count", "history_minutes_used"),
    "raw_metrics": ("dagster/row_count", "missing_minutes", "gap_minutes", "source_notes"),
}


def format_chain(chain: list[Link]) -> str:
    lines = []
    for link in chain:
        head = f"{link.asset} [{link.partition}]"
        if link.run_id is None:
            lines.append(f"{head}: not materialized")
            continue
        lines.append(f"{head}  run {link.run_id[:8]}  at {link.when}")
        for key in KEY_METADATA.get(link.asset, ()):
            if key in link.metadata:
                lines.append(f"    {key}: {link.metadata[key]}")
    return "\n".join(lines)
