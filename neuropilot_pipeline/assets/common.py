"""Small helpers the asset modules share: metadata that reads well in the UI."""


import warnings
from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from ..storage.warehouse import WriteInfo

WAREHOUSE_POOL = "warehouse_writer"

# A backfill launched from the UI gives each asset its whole range in one run. Four assets carry
# state from their previous partition (detectors, policy, model, shadow backtest); with a run
# per partition Dagster's backfill daemon launches the next one only on its next iteration,
# every 30 s, and a month took hours. Each asset walks its range oldest first instead (see
# `each_partition`), so a month is a handful of runs. A failed run is re-run over its range:
# every partition write replaces what was there.
WHOLE_RANGE_IN_ONE_RUN = dg.BackfillPolicy.single_run()
# Dagster 1.13 marks `backfill_policy` beta and warns at every asset definition, in every process
# that loads the code location; what NeuroPilot relies on is pinned by test_range_runs.py.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)


def each_partition(context: dg.AssetExecutionContext, materialize: Callable[[str], dg.MaterializeResult]
                   ) -> dg.MaterializeResult:
    """Materialize the run's partitions one after another, oldest first, as separate runs would.

    A run for one partition (a schedule, the launchpad) returns `materialize`'s result as it
    is. For a range, each partition's metadata goes on that partition's materialization, and
    each check gets one result for the range that fails if it failed in any partition and says
    in which. A partition that raises stops the run: the later ones depend on it."""
    return each_partition_of_assets(context, lambda key: [materialize(key)])[0]


def each_partition_overlapped(context: dg.AssetExecutionContext,
                              start: Callable[[str], Callable[[], dg.MaterializeResult]]) -> dg.MaterializeResult:
    """`each_partition` for work that ends waiting on other processes: `start(key)` does this
    process's part and hands the rest to workers, returning a function that waits for them and
    gives the result. Over a range, the next partition's `start` runs before this one waits, so
    this process computes while the workers draw (the report's charts: ~1.5 s a day)."""
    keys = sorted(context.partition_keys)
    started: dict[str, Callable[[], dg.MaterializeResult]] = {}

    def materialize(key: str) -> dg.MaterializeResult:
        finish = started.pop(key, None) or start(key)
        following = keys.index(key) + 1
        if following < len(keys):
            try:
                started[keys[following]] = start(keys[following])
            except BaseException:
                finish()  # this partition's files are whole before the failure stops the run
                raise
        return finish()

    return each_partition(context, materialize)


def each_partition_of_assets(context: dg.AssetExecutionContext,
                             materialize: Callable[[str], list[dg.MaterializeResult]]) -> list[dg.MaterializeResult]:
    """`each_partition` for a multi-asset: `materialize(key)` gives one result per selected asset
    (each naming its asset_key), in the same order for every partition."""
    keys = sorted(context.partition_keys)
    if len(keys) == 1:
        return materialize(keys[0])
    checks: dict[tuple, list[tuple[str, dg.AssetCheckResult]]] = {}
    assets: list = []
    for i, key in enumerate(keys, 1):
        results = materialize(key)
        assets = [r.asset_key for r in results]
        for result in results:
            context.add_asset_metadata(dict(result.metadata or {}), asset_key=result.asset_key, partition_key=key)
            for check in result.check_results or []:
                checks.setdefault((result.asset_key, check.check_name), []).append((key, check))
        context.log.info(f"{key}: done ({i} of {len(keys)})")
    covered = f"{keys[0]} .. {keys[-1]} ({len(keys)} partitions, oldest first)"
    return [dg.MaterializeResult(asset_key=asset, metadata={"run_covered": covered},
                                 check_results=[_check_over_range(name, results)
                                                for (owner, name), results in checks.items() if owner == asset])
            for asset in assets]


def _check_over_range(name: str, results: list[tuple[str, dg.AssetCheckResult]]) -> dg.AssetCheckResult:
    failed = [(key, r) for key, r in results if not r.passed]
    plain = {key: {k: (v.value if isinstance(v, dg.MetadataValue) else v) for k, v in (r.metadata or {}).items()}
             for key, r in failed}
    return dg.AssetCheckResult(
        check_name=name, passed=not failed,
        severity=failed[0][1].severity if failed else dg.AssetCheckSeverity.WARN,
        metadata={"partitions_checked": len(results), "failed_in": dg.MetadataValue.json([k for k, _ in failed]),
                  "failures": dg.MetadataValue.json(plain)},
    )


def table_metadata(info: WriteInfo, frame: pd.DataFrame, services: list[str] | None = None,
                   preview_rows: int = 10) -> dict[str, Any]:
    """Row count, file and preview; with `services`, which services this materialization covered
    (so lineage can find, per service, the materialization that computed its rows)."""
    preview = frame.head(preview_rows)
    return {
        **({"services": dg.MetadataValue.json(list(services))} if services is not None else {}),
        "dagster/row_count": info.rows,
        "path": dg.MetadataValue.path(str(info.path)),
        "bytes": info.bytes,
        "preview": dg.MetadataValue.md(preview.to_markdown(index=False) if not preview.empty else "_empty_"),
    }


# ---- services: the second dimension ---------------------------------------------------------
# Services live inside each time partition (one row set per service in every table, one state
# file, model and tfvars per service), so a cycle handles every service in one vectorised pass.
# A run tagged `neuropilot/services=api,web` (launchpad, backfill dialog, CLI) works on those
# services only and leaves the other services' rows of each partition as they were.
RAW_TABLE = "raw_metrics"
SERVICES_TAG = "neuropilot/services"


def selected_services(context: dg.AssetExecutionContext) -> list[str] | None:
    """The services named by the run's `neuropilot/services` tag; None when the run is for all."""
    tag = (context.run.tags or {}).get(SERVICES_TAG, "")
    wanted = [s.strip() for s in tag.split(",") if s.strip()]
    return wanted or None


def watched_services(cfg, wh, partition_keys: list[str]) -> list[str]:
    """The configured services; with none configured, those the source reported in these windows
    (discovered from its `service` label by raw_metrics)."""
    if cfg.services:
        return list(cfg.services)
    raw = wh.read_partitions(RAW_TABLE, partition_keys, columns=["service"])
    return sorted(raw["service"].unique()) if not raw.empty else []


def latest_services(cfg, wh) -> list[str]:
    """The configured services; with none configured, those of the newest raw_metrics partition."""
    if cfg.services:
        return list(cfg.services)
    files = wh.partition_files(RAW_TABLE)
    return watched_services(cfg, wh, [files[-1].stem]) if files else []


def by_service(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A frame's rows per service, split once (filtering per service is quadratic in services)."""
    return {str(s): g for s, g in frame.groupby("service", sort=False)} if not frame.empty else {}


def run_services(context: dg.AssetExecutionContext, cfg, wh, partition_keys: list[str]) -> list[str]:
    """The services this run works on: the watched ones, narrowed by the run's services tag."""
    return narrow_to_tag(context, watched_services(cfg, wh, partition_keys))


def narrow_to_tag(context: dg.AssetExecutionContext, services: list[str]) -> list[str]:
    """`services` narrowed by the run's services tag; a tag naming others stops the run."""
    wanted = selected_services(context)
    if wanted is None:
        return services
    unknown = sorted(set(wanted) - set(services))
    if unknown:
        raise dg.Failure(f"run tag {SERVICES_TAG}={','.join(wanted)} names services this pipeline does not watch: "
                         f"{', '.join(unknown)} (watched: {', '.join(services) or 'none yet'}). Fix the tag, or add "
                         "them to `services` in ops_config.yaml.", allow_retries=False)
    return [s for s in services if s in wanted]


def rows_to_replace(context: dg.AssetExecutionContext, services: list[str]) -> list[str] | None:
    """For write_partition: the services whose rows this run replaces (None: the whole partition)."""
    return services if selected_services(context) is not None else None


def services_in_window(wh, partition_key: str) -> set[str]:
    """Services with raw_metrics rows in a window (none if the window was never collected)."""
    if not wh.has_partition(RAW_TABLE, partition_key):
        return set()
    return set(wh.read_partitions(RAW_TABLE, [partition_key], columns=["service"])["service"].astype(str))


def previous_window_unfinished(prev_key: str, services: list[str], what: str) -> dg.Failure:
    """The previous window was collected but its chained state is missing: it is still running,
    or failed part-way. Starting cold here would silently break the chain a backfill replays
    (detectors re-learning, the policy forgetting), so fail; the retry finds it finished."""
    return dg.Failure(
        f"The previous window {prev_key} has raw_metrics for {', '.join(sorted(services))} but no {what}: it has not "
        f"finished (still running, or it failed after collecting). Materialize {prev_key} first; runs of a backfill "
        "do, in order, and this run is retried.")
