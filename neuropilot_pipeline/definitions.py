"""The NeuroPilot code location: assembles assets, checks, jobs, schedules, sensors, resources."""

import dagster as dg

from .assets import apply, deliver, detect, decide, features, ingest, model, overrides, report
from .automation import JOBS, SCHEDULES, SENSORS
from .resources.neuropilot import NeuroPilotResource
from .resources.sources import MetricsSourceResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, features, model, detect, decide, apply, overrides, report, deliver]),
    asset_checks=dg.load_asset_checks_from_modules([ingest, features, model, detect, decide, apply, overrides, report, deliver]),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources={
        "neuropilot": NeuroPilotResource(),
        "metrics_source": MetricsSourceResource(),
    },
)
