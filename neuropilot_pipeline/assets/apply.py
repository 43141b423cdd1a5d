"""terraform_vars: apply a decision to the infrastructure repository (or show what it would do)."""


import contextlib
import errno

import dagster as dg
import pandas as pd

from ..core.config import MANAGED_THRESHOLDS, INTEGER_THRESHOLDS
from ..core.gitops import decision_commit_subject, files_to_check_for_human_changes
from ..core.tfvars import preview_tfvars_updates, read_tfvars
from ..core.yaml_edit import update_yaml_values
from ..resources.neuropilot import NeuroPilotResource
from .common import (
    WAREHOUSE_POOL, WHOLE_RANGE_IN_ONE_RUN, each_partition_of_assets, rows_to_replace, run_services, table_metadata,
)
from .decide import APPLIED_STATE, DECISIONS_TABLE, THRESHOLD_DECISION, decide_window
from .overrides import record_overrides
from .partitions import six_hourly_partitions, window_bounds, windows_of_day

APPLIED_TABLE = "applied_changes"


def _value(name: str, value: float) -> int | float:
    return int(round(value)) if name in INTEGER_THRESHOLDS else round(float(value), 3)


TERRAFORM_VARS = dg.AssetSpec(
    "terraform_vars",
    group_name="apply",
    kinds={"terraform", "git"},
    deps=["threshold_decision"],
    description="mode=apply: writes the decided thresholds into each service's terraform.tfvars (only those values "
                "change), updates ops_config.yaml, and commits to the infrastructure repository. mode=monitor: "
                "shows the would-be diff and changes nothing.",
)


@dg.multi_asset(
    specs=[THRESHOLD_DECISION, TERRAFORM_VARS],
    partitions_def=six_hourly_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    pool=WAREHOUSE_POOL,
    can_subset=True,
)
def decide_and_apply(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource):
    """One window's decision, then its apply, then the next window's: a decision starts from the
    thresholds the previous window's apply left in force (its `applied` state), so over a range
    the two cannot run as separate steps. Either can still be materialized alone."""
    selected = [spec for spec in (THRESHOLD_DECISION, TERRAFORM_VARS) if spec.key in context.selected_asset_keys]
    work = {THRESHOLD_DECISION.key: decide_window, TERRAFORM_VARS.key: apply_window}
    yield from each_partition_of_assets(context, lambda key: [work[spec.key](context, neuropilot, key)
                                                              for spec in selected])


def apply_window(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    wh, state = neuropilot.warehouse(cfg), neuropilot.state(cfg)
    services = run_services(context, cfg, wh, [key])
    decisions = wh.read_partitions(DECISIONS_TABLE, [key], services=services)
    if decisions.empty:
        raise dg.Failure(f"No threshold_decision for {key}: materialize threshold_decision for it first.")
    repo = cfg.infra() if cfg.mode == "apply" else None
    if repo is not None and repo.clone_if_missing():
        context.log.info(f"Cloned {repo.remote} into {repo.path}.")
    git_repo = repo if repo is not None and (cfg.infra_repo / ".git").exists() else None
    with git_repo.locked() if git_repo is not None else contextlib.nullcontext():
        # Start from what runs on other machines and people pushed (fast-forward only).
        synced = git_repo.sync_with_remote() if git_repo is not None else "monitor mode"
        recovered = git_repo.recover_interrupted_apply() if git_repo is not None else None
        if recovered:
            context.log.warning(f"Recovered an interrupted apply: {recovered}.")
        rows, diffs, commits = _apply_decisions(context, cfg, key, decisions, repo, wh, state)
    table = pd.DataFrame(rows)
    info = wh.write_partition(APPLIED_TABLE, key, table, replace_services=rows_to_replace(context, services))
    return dg.MaterializeResult(asset_key=TERRAFORM_VARS.key, metadata={
        **table_metadata(info, table, services),
        "mode": cfg.mode,
        "applied": int(table["applied"].sum()),
        "recovered": recovered or "nothing to recover",
        "infra_sync": synced,
        "status": dg.MetadataValue.json({r["service"]: r["status"] for r in rows}),
        "commits": dg.MetadataValue.json(commits),
        "diff": dg.MetadataValue.md("\n\n".join(f"**{s}**\n```diff\n{d}\n```" for s, d in diffs.items()) or "_no change_"),
    })


def _apply_decisions(context, cfg, key, decisions, repo, wh, state):
    earlier_today = [k for k in windows_of_day(key[:10]) if k < key]
    applied_today = wh.read_partitions(APPLIED_TABLE, earlier_today)
    # Changes applied earlier today per service, counted once (not a filter per service).
    used_today = applied_today[applied_today["applied"]].groupby("service").size().to_dict() \
        if not applied_today.empty else {}
    limit = cfg.rate_limits["max_applied_changes_per_day"]
    rows, diffs, commits = [], {}, {}
    # Which tfvars a human may have touched, in two git calls; only those get the full check.
    suspects = files_to_check_for_human_changes(repo, [cfg.tfvars_path(s) for s in decisions["service"]]) \
        if repo is not None and (cfg.infra_repo / ".git").exists() else set()
    decided, changes = [], []
    for _, d in decisions.iterrows():
        service = d["service"]
        old = {n: _value(n, d[f"old_{n}"]) for n in MANAGED_THRESHOLDS}
        new = {n: _value(n, d[f"new_{n}"]) for n in MANAGED_THRESHOLDS}
        path = cfg.tfvars_path(service)
        used = int(used_today.get(service, 0))
        status, diff = "unchanged", ""
        in_force = old
        # Never write over a human's edit the sensor has not recorded yet: record it, hold.
        # Stamped with the decision's time (the window's end), so backfills replay the same way.
        suspect = repo is not None and repo._rel(path) in suspects
        fresh = record_overrides(cfg, state, wh, service, window_bounds(key)[1], source="terraform_vars") \
            if suspect else []
        dirty = suspect and path.exists() and bool(repo.uncommitted([path]))
        if fresh or dirty:
            status = ("held: human override of " + ", ".join(r["var"] for r in fresh) if fresh else
                      "held: the file has uncommitted edits; commit or discard them")
            current = read_tfvars(path) if path.exists() else {}
            in_force = {n: _value(n, current.get(n, old[n])) for n in MANAGED_THRESHOLDS}
        elif new != old:
            in_rollout = pd.Timestamp(key[:10]) < pd.Timestamp(cfg.partitions_start) + pd.Timedelta(days=cfg.monitor_days)
            if cfg.mode == "monitor" or in_rollout:
                change = preview_tfvars_updates(path, new)
                status = f"monitor (rollout: first {cfg.monitor_days} days)" if cfg.mode == "apply" else "monitor (not applied)"
                diff = change.diff
            elif used >= limit:
                status = f"held: {used} changes applied today, max_applied_changes_per_day is {limit}"
            else:
                change = preview_tfvars_updates(path, new)
                diff = change.diff
                subject = decision_commit_subject(old, new, reward=float(d["reward"]), sla=float(d["sla_percent"]),
                                                  model_version=d.get("model_version") or "none")
                changes.append((path, change.new_text, subject, str(d["reason"]),
                                {"NeuroPilot-Run-Id": context.run.run_id, "NeuroPilot-Partition": f"{key}/{service}"}))
                status, in_force = "applied", new
        decided.append((service, path, status, in_force, diff, len(changes) - 1 if status == "applied" else None))
    # One journaled batch, one commit per service: a crash anywhere in it is finished by the
    # next run. A file with uncommitted edits was held above; the batch checks again.
    shas = repo.apply_file_changes(changes) if changes else []
    if changes and len(cfg.services) == 1 and cfg.config_path is not None:
        _record_in_config(context, cfg.config_path, next(values for _, _, status, values, _, _ in decided
                                                          if status == "applied"))
    applied = {}
    for service, path, status, in_force, diff, change in decided:
        commit = shas[change] if change is not None else None
        applied[service] = {"thresholds": in_force, "status": status, "commit": commit}
        rows.append({"partition": key, "service": service, "status": status, "applied": status == "applied",
                     "commit": commit, "tfvars": str(path), **{f"value_{n}": float(v) for n, v in in_force.items()}})
        if diff:
            diffs[service] = diff
        if commit:
            commits[service] = commit
    if applied:
        state.write_services(APPLIED_STATE, key, applied)
    return rows, diffs, commits


def _record_in_config(context, config_path, values) -> None:
    """Keep ops_config.yaml's threshold values current for people reading it. In a container
    the file is often a read-only mount (a ConfigMap): the commit above is the record then."""
    try:
        update_yaml_values(config_path, {f"thresholds.{n}.value": v for n, v in values.items()})
    except OSError as exc:
        if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
            raise
        context.log.warning(f"{config_path} is read-only here ({exc.strerror}, a read-only file system or mount); "
                            "its thresholds.*.value were not updated. The applied values are in the tfvars commit.")
