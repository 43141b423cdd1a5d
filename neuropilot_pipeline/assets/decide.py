"""reward and threshold_decision: how the last window went, and what to change because of it."""


from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from ..core.config import INTEGER_THRESHOLDS, MANAGED_THRESHOLDS, OpsConfig
from ..core.parallel import map_threads
from ..core.policy import Bounds, Observation, make_policy
from ..core.reward import window_reward
from ..core.service_model import Thresholds
from ..core.tfvars import preview_tfvars_updates
from ..core.telemetry import METRIC_COLUMNS
from ..resources.neuropilot import NeuroPilotResource
from ..resources.sources import thresholds_in_force
from ..storage.state import StateStore
from .common import (
    RAW_TABLE, WAREHOUSE_POOL, WHOLE_RANGE_IN_ONE_RUN, by_service, each_partition, previous_window_unfinished,
    rows_to_replace, run_services, services_in_window, table_metadata,
)
from .detect import ANOMALIES_TABLE
from .overrides import active_overrides
from .partitions import (
    daily_partitions, day_bounds, previous_day, previous_window, previous_window_key, six_hourly_partitions,
    window_bounds, windows_of_day,
)

REWARD_TABLE = "reward"
DECISIONS_TABLE = "threshold_decisions"
POLICY_STATE = "policy"
APPLIED_STATE = "applied"


@dg.asset(
    partitions_def=six_hourly_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="decide",
    kinds={"parquet"},
    pool=WAREHOUSE_POOL,
    deps=["raw_metrics"],
    description="Per service: SLA compliance over the window (minutes with p95 within slo_p95_ms), the window's "
                "cost projected to a month against cost_budget, and reward = (1 if SLA >= target else 0) - cost variance.",
)
def reward(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _window_reward(context, neuropilot, key))


def _window_reward(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    start, end = window_bounds(key)
    wh = neuropilot.warehouse(cfg)
    services = run_services(context, cfg, wh, [key])
    raw = wh.read_window(RAW_TABLE, start, end, columns=["service", "ts", "p95_latency_ms", "cost_usd",
                                                         "error_rate_percent"], services=services)
    if raw.empty:
        raise dg.Failure(f"raw_metrics has no rows for {key}: materialize raw_metrics for it first.")
    rows = []
    for service, g in raw.groupby("service", sort=True):
        good = g["p95_latency_ms"] <= cfg.slo_p95_ms
        r = window_reward(sla_pct=100.0 * good.mean(), sla_target=cfg.sla_target, window_cost=float(g["cost_usd"].sum()),
                          monthly_budget=cfg.cost_budget, window_minutes=len(g), weights=cfg.reward_weights or None,
                          latency_p95_ms=float(g["p95_latency_ms"].median()), slo_p95_ms=cfg.slo_p95_ms,
                          availability_pct=100.0 - float(g["error_rate_percent"].mean()))
        rows.append({"partition": key, "service": service, "minutes": len(g),
                     "good_minutes": int(good.sum()), **_reward_fields(r)})
    table = pd.DataFrame(rows)
    info = wh.write_partition(REWARD_TABLE, key, table,
                              replace_services=rows_to_replace(context, services))
    first = rows[0]
    return dg.MaterializeResult(metadata={
        **table_metadata(info, table, services),
        "reward": float(table["reward"].mean()),
        "sla_percent": float(first["sla_percent"]),
        "sla_met": bool(table["sla_met"].all()),
        "projected_monthly_cost": float(table["projected_monthly_cost"].sum()),
    })


def _reward_fields(r: Any) -> dict[str, Any]:
    fields = dict(vars(r)) if not hasattr(r, "_asdict") else r._asdict()
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in fields.items()}


def policy_bounds(cfg: OpsConfig) -> dict[str, Bounds]:
    return {name: Bounds(spec.min, spec.max, spec.max_step) for name, spec in cfg.thresholds.items()}


def thresholds_before(cfg: OpsConfig, state: StateStore, services: list[str],
                      partition_key: str) -> dict[str, tuple[Thresholds, str]]:
    """Per service, the thresholds in force during this window and where they come from: what
    was applied after the previous decision, else (first window, or nothing applied) what the
    infrastructure holds."""
    prev_key = previous_window_key(partition_key)
    applied = state.read_services(APPLIED_STATE, prev_key, services)
    unapplied = [s for s in services if s not in applied]
    decided = state.read_services(POLICY_STATE, prev_key, unapplied) if unapplied else {}
    out = {}
    for service in services:
        if service in applied:
            out[service] = Thresholds.from_dict(applied[service]["thresholds"]), f"applied after {prev_key}"
        elif "in_force" in decided.get(service, {}):
            out[service] = Thresholds.from_dict(decided[service]["in_force"]), f"in force during {prev_key}"
        else:
            out[service] = thresholds_in_force(cfg, service)
    return out


def stored_policy_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A policy state as it is stored: its demand and fleet histories as arrays (see StateStore bundles)."""
    if state and isinstance(state.get("demand"), list):
        state = {**state, "demand": np.asarray(state["demand"], dtype=float)}
    if state and isinstance(state.get("fleet"), list):
        state = {**state, "fleet": np.asarray(state["fleet"], dtype=np.int32)}  # counts < 1e9: half the bytes
    return state


# Materialized together with terraform_vars by `decide_and_apply` (apply.py): each window's
# decision starts from the thresholds the previous window's apply left in force.
THRESHOLD_DECISION = dg.AssetSpec(
    "threshold_decision",
    group_name="decide",
    kinds={"parquet"},
    deps=[
        "anomalies", "reward",
        dg.AssetDep("anomaly_model", partition_mapping=previous_day),
        dg.AssetDep("threshold_decision", partition_mapping=previous_window),
    ],
    description="Per service: increase, decrease or maintain each managed threshold, within bounds and step limits, "
                "with a readable reason and the inputs used. The policy's state is carried from the previous window.",
)


def decide_window(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    cfg = neuropilot.cfg()
    start, end = window_bounds(key)
    wh, state, models = neuropilot.warehouse(cfg), neuropilot.state(cfg), neuropilot.models(cfg)
    services = run_services(context, cfg, wh, [key])
    raw = wh.read_window(RAW_TABLE, start, end, columns=["service", "ts", *METRIC_COLUMNS], services=services)
    rewards = wh.read_partitions(REWARD_TABLE, [key], services=services)
    anomalies = wh.read_partitions(ANOMALIES_TABLE, [key], services=services)
    if raw.empty or rewards.empty:
        raise dg.Failure(f"threshold_decision for {key} needs raw_metrics and reward for {key}: materialize them first.")
    model_day = (start - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    policy = make_policy(cfg.policy, learning_rate=cfg.learning_rate, bounds=policy_bounds(cfg))
    rows, per_service, would_be = [], {}, {}
    model_versions = models.versions_for(services, model_day)
    raw_of, anomalies_of = by_service(raw), by_service(anomalies)
    reward_of = {service: g.iloc[0] for service, g in by_service(rewards).items()}
    skipped = {}
    prev_key = previous_window_key(key)
    prev_collected = None  # read only if some service has no state from the previous window
    pending = []  # (service, observation, policy state, overrides, thresholds in force, their origin, model)
    carried = state.read_services(POLICY_STATE, prev_key, services)
    in_force_of = thresholds_before(cfg, state, services, key)
    new_states = {}
    for service in services:
        if service not in raw_of or service not in reward_of:
            # No telemetry for this service in this window: no decision, and its policy state
            # goes on unchanged (one silent window must not reset what the policy has learned,
            # nor hold up the other services).
            skipped[service] = "no raw_metrics or reward rows in this window"
            if service in carried:
                new_states[service] = carried[service]
            context.log.warning(f"threshold_decision {key}: {service} skipped ({skipped[service]}).")
            continue
        g = raw_of[service].copy()
        g["good"] = g["p95_latency_ms"] <= cfg.slo_p95_ms
        in_force, in_force_origin = in_force_of[service]
        prev_state = carried.get(service)
        if prev_state is None:
            prev_collected = services_in_window(wh, prev_key) if prev_collected is None else prev_collected
            if service in prev_collected:
                raise previous_window_unfinished(prev_key, [service], "policy state")
        prev_state = prev_state or {}
        mine = anomalies_of.get(service, anomalies.iloc[0:0])
        sev = mine["severity"].value_counts().to_dict() if not mine.empty else {}
        serious_latency = int(((mine["metric"] == "p95_latency_ms") & mine["severity"].isin(["medium", "high", "critical"])).sum()) \
            if not mine.empty else 0
        model = model_versions.get(service)
        obs = Observation(
            window_start=start, minutes=g.reset_index(drop=True), thresholds=in_force,
            anomaly_counts={**{s: int(sev.get(s, 0)) for s in ("low", "medium", "high", "critical")},
                            "latency": serious_latency},
            sla_target=cfg.sla_target, monthly_budget=cfg.cost_budget, slo_p95_ms=cfg.slo_p95_ms,
        )
        held = active_overrides(state, service, start, end)
        if held:
            # A human changed these: adopt their values as the baseline and leave them alone.
            in_force = Thresholds.from_dict({**in_force.to_dict(), **{v: r["value"] for v, r in held.items()}})
            in_force_origin += "; human override of " + ", ".join(sorted(held))
            obs.thresholds = in_force
        pending.append((service, obs, prev_state.get("policy"), held, in_force, in_force_origin, model))
    # The decisions themselves (mostly the policy's compiled replays, which release the GIL) on
    # every core; what they read and write stays in order, here.
    decided = map_threads(lambda p: policy.decide(p[2], p[1]), pending)
    for (service, obs, _, held, in_force, in_force_origin, model), decision in zip(pending, decided):
        if held:
            decision.thresholds = Thresholds.from_dict({**decision.thresholds.to_dict(),
                                                        **{v: r["value"] for v, r in held.items()}})
            decision.reason += "; held (human override): " + ", ".join(
                f"{v}={r['value']} by {r['author']} until {r['held_until'][:16]}" for v, r in sorted(held.items()))
        new_states[service] = {"policy": stored_policy_state(decision.new_state), "in_force": in_force.to_dict(),
                               "proposed": decision.thresholds.to_dict()}
        rew = reward_of[service]
        row = {
            "partition": key, "service": service, "mode": cfg.mode, "policy": cfg.policy, "phase": decision.phase,
            "reason": decision.reason, "reward": float(rew["reward"]), "sla_percent": float(rew["sla_percent"]),
            "model_version": model[0] if model else None, "model_partition": model[1] if model else None,
            "anomalies_partition": key, "reward_partition": key, "raw_partition": key,
            "thresholds_origin": in_force_origin,
            "anomaly_counts": str(obs.anomaly_counts),
        }
        for name in MANAGED_THRESHOLDS:
            row[f"old_{name}"] = float(getattr(in_force, name))
            row[f"new_{name}"] = float(getattr(decision.thresholds, name))
            row[f"action_{name}"] = ("hold" if name in held else
                                     "increase" if row[f"new_{name}"] > row[f"old_{name}"] else
                                     "decrease" if row[f"new_{name}"] < row[f"old_{name}"] else "maintain")
        rows.append(row)
        if cfg.mode == "monitor" and decision.thresholds != in_force:
            # Monitor mode: the decision shows exactly what apply mode would write.
            preview = preview_tfvars_updates(cfg.tfvars_path(service), {
                n: (int(round(v)) if n in INTEGER_THRESHOLDS else v) for n, v in decision.thresholds.to_dict().items()})
            would_be[service] = preview.diff
        per_service[service] = {
            "reason": decision.reason, "phase": decision.phase, "model_version": row["model_version"],
            "model_partition": row["model_partition"],
            "changes": {n: f"{row[f'old_{n}']:g} -> {row[f'new_{n}']:g}" for n in MANAGED_THRESHOLDS
                        if row[f"old_{n}"] != row[f"new_{n}"]},
        }
    if new_states:
        state.write_services(POLICY_STATE, key, new_states)
    if not rows:
        raise dg.Failure(f"threshold_decision for {key}: no service has telemetry in this window "
                         f"({', '.join(skipped)}); materialize raw_metrics and reward for it first.")
    table = pd.DataFrame(rows)
    info = wh.write_partition(DECISIONS_TABLE, key, table, replace_services=rows_to_replace(context, services))
    first = rows[0]
    return dg.MaterializeResult(asset_key=THRESHOLD_DECISION.key, metadata={
        **table_metadata(info, table, services),
        "mode": cfg.mode,
        "model_version": first["model_version"] or "none yet (cold start)",
        "model_partition": first["model_partition"] or "none",
        "anomalies_partition": key,
        "reward_partition": key,
        "raw_metrics_partition": key,
        "reward": first["reward"],
        "decisions": dg.MetadataValue.json(per_service),
        "changed_thresholds": int(sum(len(v["changes"]) for v in per_service.values())),
        **({"skipped": dg.MetadataValue.json(skipped)} if skipped else {}),
        **({"would_be_diff": dg.MetadataValue.md("\n\n".join(f"**{s}**\n```diff\n{d}\n```" for s, d in would_be.items()))}
           if would_be else {}),
    })


BACKTEST_TABLE = "policy_backtest"
BACKTEST_STATE = "backtest"
BACKTEST_DAYS = 14
DAY_FIGURES = ("minutes", "good_minutes", "cost", "oracle_cost", "fixed_good_minutes", "fixed_cost", "missing_minutes")


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=WHOLE_RANGE_IN_ONE_RUN,
    group_name="decide",
    kinds={"parquet"},
    pool=WAREHOUSE_POOL,
    deps=["threshold_decision", dg.AssetDep("policy_backtest", partition_mapping=previous_day)],
    description="What apply mode would have done: each service's own request rate replayed through the reference "
                "service model with the configured policy in the loop (a shadow run, carried from day to day), "
                "beside the fixed 80/30 thresholds and the per-minute oracle; SLA, cost and saving over the last "
                "14 days.",
)
def policy_backtest(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource) -> dg.MaterializeResult:
    return each_partition(context, lambda key: _backtest_day(context, neuropilot, key))


def _backtest_day(context: dg.AssetExecutionContext, neuropilot: NeuroPilotResource, key: str) -> dg.MaterializeResult:
    from ..core.backtest import shadow_replay

    cfg = neuropilot.cfg()
    day_start, day_end = day_bounds(key)
    wh, state = neuropilot.warehouse(cfg), neuropilot.state(cfg)
    services = run_services(context, cfg, wh, windows_of_day(key))
    raw = wh.read_window(RAW_TABLE, day_start, day_end, columns=["service", "ts", "request_rate_per_s"],
                         services=services)
    if raw.empty:
        raise dg.Failure(f"No raw_metrics on {key}: run the ops cycle for that day first.")
    previous_day_key = (day_start - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    earlier_days = [(day_start - pd.Timedelta(days=d)).strftime("%Y-%m-%d") for d in range(BACKTEST_DAYS - 1, 0, -1)]
    earlier = wh.read_partitions(BACKTEST_TABLE, earlier_days, services=services)
    earlier_of = {s: g for s, g in earlier.groupby("service", sort=False)} if not earlier.empty else {}
    grid = pd.date_range(day_start, day_end - pd.Timedelta(minutes=1), freq="1min")
    shadows = []
    carried_of = state.read_services(BACKTEST_STATE, previous_day_key, services)
    for service, g in raw.groupby("service", sort=True):
        series = g.drop_duplicates("ts").set_index("ts")["request_rate_per_s"].reindex(grid)
        # The shadow run goes on from where yesterday's ended: one day of replay per day.
        shadows.append((service, (series.fillna(0.0) * 60.0).to_numpy(), int(series.isna().sum()),
                        carried_of.get(service)))
    policy = make_policy(cfg.policy, learning_rate=cfg.learning_rate, bounds=policy_bounds(cfg))
    # Each service's replay is its own: threads run them on every core (the service model's
    # compiled kernels release the GIL; the policy holds no state between decisions).
    replayed = map_threads(lambda shadow: shadow_replay(shadow[1], policy, shadow[3], day_start,
                                                        sla_target=cfg.sla_target, monthly_budget=cfg.cost_budget),
                           shadows)
    rows = []
    state.write_services(BACKTEST_STATE, key, {service: {**carry_on, "policy": stored_policy_state(carry_on["policy"])}
                                               for (service, *_), (_, carry_on) in zip(shadows, replayed)})
    for (service, _, missing_minutes, carried), (day, carry_on) in zip(shadows, replayed):
        day["missing_minutes"] = missing_minutes
        mine = earlier_of.get(service)
        past = {f: float(mine[f"day_{f}"].sum()) for f in DAY_FIGURES} if mine is not None and "day_minutes" in mine \
            else dict.fromkeys(DAY_FIGURES, 0.0)
        total = {f: past[f] + day[f] for f in DAY_FIGURES}
        cost_saving = 100.0 * (1 - total["cost"] / total["fixed_cost"]) if total["fixed_cost"] else float("nan")
        rows.append({"partition": key, "service": service, "days": round(total["minutes"] / 1440, 2),
                     "policy": cfg.policy, "sla": 100.0 * total["good_minutes"] / total["minutes"],
                     "cost": round(total["cost"], 6), "oracle_cost": round(total["oracle_cost"], 6),
                     "cost_over_oracle": round(total["cost"] / total["oracle_cost"], 6) if total["oracle_cost"] else None,
                     "fixed_sla": 100.0 * total["fixed_good_minutes"] / total["minutes"],
                     "fixed_cost": round(total["fixed_cost"], 6), "saving_vs_fixed_percent": round(cost_saving, 3),
                     "missing_minutes": int(total["missing_minutes"]),
                     "shadow": f"carried from {previous_day_key}" if carried else f"started {key} at 80/30",
                     **{f"day_{f}": day[f] for f in DAY_FIGURES},
                     "thresholds_now": str(carry_on["thresholds"])})
    table = pd.DataFrame(rows)
    info = wh.write_partition(BACKTEST_TABLE, key, table, replace_services=rows_to_replace(context, services))
    worst = table.sort_values("sla").iloc[0]
    return dg.MaterializeResult(metadata={
        **table_metadata(info, table, services),
        "policy_sla": float(worst["sla"]), "fixed_sla": float(worst["fixed_sla"]),
        "lowest_sla_service": str(worst["service"]),
        "saving_vs_fixed_percent": float(100.0 * (1 - table["cost"].sum() / table["fixed_cost"].sum())),
        "cost_over_oracle": float(table["cost"].sum() / table["oracle_cost"].sum()),
        "days": float(table["days"].max()),
    })
