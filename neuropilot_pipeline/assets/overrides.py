"""Human overrides: a managed value changed by someone other than NeuroPilot is adopted.

Detection compares each service's tfvars with what NeuroPilot last committed (a later commit
by someone else, or an uncommitted edit). A new override is recorded once (state +
warehouse table `human_overrides`); the next decision takes the human's value as its
baseline and holds that variable for `rollout.human_hold_hours`. `terraform_vars` runs the
same detection before it writes, so an edit the sensor has not seen yet is never clobbered.
"""

import hashlib
import json

import dagster as dg
import pandas as pd

from ..core.config import MANAGED_THRESHOLDS, OpsConfig
from ..core.gitops import human_changes
from ..resources.neuropilot import NeuroPilotResource
from ..storage.state import StateStore
from ..storage.warehouse import Warehouse
from .common import WAREHOUSE_POOL, latest_services

OVERRIDES_STATE = "overrides"
OVERRIDES_TABLE = "human_overrides"


def current_overrides(state: StateStore, service: str) -> dict:
    return (state.read_json(f"{OVERRIDES_STATE}-{service}", "current") or {}).get("vars", {})


def pending_changes(cfg: OpsConfig, state: StateStore, service: str) -> list[dict]:
    """Human changes in the service's tfvars not recorded yet (read-only)."""
    path = cfg.tfvars_path(service)
    if not path.exists() or not (cfg.infra_repo / ".git").exists():
        return []
    known = current_overrides(state, service)
    out = []
    for c in human_changes(cfg.infra(), path, MANAGED_THRESHOLDS):
        rec = known.get(c.var)
        if rec and rec["value"] == c.new and rec.get("sha") == c.sha:
            continue
        out.append({"var": c.var, "old": c.old, "value": c.new, "sha": c.sha, "author": c.author})
    return out


def record_overrides(cfg: OpsConfig, state: StateStore, wh: Warehouse, service: str, now: pd.Timestamp,
                     changes: list[dict] | None = None, source: str = "sensor") -> list[dict]:
    changes = pending_changes(cfg, state, service) if changes is None else changes
    if not changes:
        return []
    doc = state.read_json(f"{OVERRIDES_STATE}-{service}", "current") or {"vars": {}}
    held_until = now + pd.Timedelta(hours=cfg.human_hold_hours)
    rows = []
    for c in changes:
        rec = {**c, "detected_at": now.isoformat(), "held_until": held_until.isoformat(), "source": source}
        doc["vars"][c["var"]] = rec
        rows.append({"service": service, **{k: (str(v) if k in ("old", "value") else v) for k, v in rec.items()}})
    state.write_json(f"{OVERRIDES_STATE}-{service}", "current", doc)
    wh.write_partition(OVERRIDES_TABLE, now.strftime("%Y-%m-%dT%H%M%S") + f"-{service}", pd.DataFrame(rows))
    return rows


def active_overrides(state: StateStore, service: str, window_start: pd.Timestamp, window_end: pd.Timestamp) -> dict:
    """Overrides detected before the window ended and still held at its start."""
    return {var: rec for var, rec in current_overrides(state, service).items()
            if pd.Timestamp(rec["detected_at"]) < window_end and pd.Timestamp(rec["held_until"]) > window_start}


@dg.asset(
    group_name="apply",
    kinds={"git"},
    pool=WAREHOUSE_POOL,
    description="Records managed thresholds changed by a human (a commit or an edit) so the policy adopts them as its "
                "baseline and holds them for rollout.human_hold_hours. Launched by human_override_sensor.",
)
def human_overrides(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    state, wh = neuropilot.state(cfg), neuropilot.warehouse(cfg)
    now = pd.Timestamp.now(tz="UTC")
    recorded = {s: record_overrides(cfg, state, wh, s, now) for s in latest_services(cfg, wh)}
    return dg.MaterializeResult(metadata={
        "recorded": sum(len(v) for v in recorded.values()),
        "overrides": dg.MetadataValue.json({s: [f"{r['var']}: {r['old']} -> {r['value']} by {r['author']}" for r in v]
                                            for s, v in recorded.items() if v}),
    })


def changes_fingerprint(changes: dict) -> str:
    return hashlib.sha256(json.dumps(changes, sort_keys=True, default=str).encode()).hexdigest()[:16]
