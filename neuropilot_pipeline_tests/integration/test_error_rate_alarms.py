"""A healthy service's error rate sits at 0 with a stray failed request now and then: the
anomalies asset pages on an error incident, not on each stray error (anomaly_min_deviation)."""

import dagster as dg
import numpy as np
import pandas as pd

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.yaml_edit import update_yaml_values
from neuropilot_pipeline.storage.warehouse import Warehouse

WINDOWS = [f"2026-11-0{day}-{hour:02d}:00" for day in (1, 2, 3) for hour in (0, 6, 12, 18)]
INCIDENT = pd.Timestamp("2026-11-03 14:00", tz="UTC")


def _run(key, assets):
    from neuropilot_pipeline.definitions import defs

    result = defs.resolve_job_def("ops_cycle").execute_in_process(
        partition_key=key, instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(a) for a in assets])
    assert result.success


def _error_rate_alarms(tmp_path, monkeypatch, name, min_deviation=None):
    home = tmp_path / name
    config = prepare_demo_home(home, fresh=True)
    if min_deviation is not None:
        update_yaml_values(config, {"anomaly_min_deviation": min_deviation})
    monkeypatch.setenv("NEUROPILOT_HOME", str(home))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    wh = Warehouse(home / "warehouse")
    rng = np.random.default_rng(0)
    for key in WINDOWS:
        _run(key, ["raw_metrics"])
        raw = wh.read_partition("raw_metrics", key)
        errors = np.where(rng.random(len(raw)) < 0.02, 0.05 * rng.random(len(raw)), 0.0)
        in_incident = (raw["ts"] >= INCIDENT) & (raw["ts"] < INCIDENT + pd.Timedelta(minutes=30))
        wh.write_partition("raw_metrics", key, raw.assign(error_rate_percent=np.where(in_incident, 3.0, errors)))
    for key in WINDOWS:
        _run(key, ["anomalies"])
    found = pd.concat([wh.read_partition("anomalies", key) for key in WINDOWS])
    return found[found["metric"] == "error_rate_percent"]


def test_an_error_incident_pages_and_stray_errors_do_not(tmp_path, monkeypatch):
    alarms = _error_rate_alarms(tmp_path, monkeypatch, "shipped")
    assert alarms["ts"].tolist() == [INCIDENT]
    assert alarms["severity"].tolist() == ["critical"]
    # Without the floor every stray error after the first day is "material" and far out.
    assert len(_error_rate_alarms(tmp_path, monkeypatch, "no_floor", {"error_rate_percent": 0})) >= 2
