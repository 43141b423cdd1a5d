"""The NeuroPilot code location: assembles assets, checks, jobs, schedules, sensors, resources."""

import dagster as dg

from . import pool_claim_fix
from .assets import apply, deliver, detect, decide, features, ingest, model, overrides, report
from .automation import JOBS, SCHEDULES, SENSORS
from .resources.neuropilot import NeuroPilotResource
from .resources.sources import MetricsSourceResource

# Before any step claims a warehouse_writer slot: one slot must mean one writer.
pool_claim_fix.install()

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, features, model, detect, decide, apply, overrides, report, deliver]),
    asset_checks=dg.load_asset_checks_from_modules([ingest, features, model, detect, decide, apply, overrides, report, deliver]),
    jobs=JOBS,
    # Every run in one process. The default executor starts a process per step, and each one
    # imports the code location first: a scheduled ops cycle took 40-65 s on 2 cores for ~3 s of
    # work. The steps of a run could not use the parallelism anyway: the warehouse pool lets one
    # of them write at a time, and training and charts spread over the cores by themselves.
    executor=dg.in_process_executor,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={
        "neuropilot": NeuroPilotResource(),
        "metrics_source": MetricsSourceResource(),
    },
)
