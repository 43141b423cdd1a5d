"""Damaged or missing stored state is refused with the file, the cause and the fix; a full
disk fails the write cleanly and leaves the previous version intact."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.atomic import DiskFullError
from neuropilot_pipeline.core.config import ConfigError, load_ops_config
from neuropilot_pipeline.core.gmm import AnomalyModel, ModelFileError, train_model
from neuropilot_pipeline.storage.models import REGISTRY_TABLE, ModelStore
from neuropilot_pipeline.storage.state import StateFileError, StateStore
from neuropilot_pipeline.storage.warehouse import Warehouse, WarehouseError
from neuropilot_pipeline_tests.integration.test_prometheus_faults import failure_text
from neuropilot_pipeline_tests.integration.test_prometheus_source import materialize

WINDOW = "2026-11-01-00:00"


def two_regimes(seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(6, 1, (200, 2))])


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # truncated (a copy cut short)
    lambda text: "\x00\x01garbage",
    lambda text: json.dumps({"version": "x"}),  # valid JSON, not a model
])
def test_a_damaged_model_file_is_refused_with_the_fix(tmp_path, damage):
    model, _ = train_model(two_regimes(), ["a", "b"])
    path = model.save(tmp_path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ModelFileError, match=f"{path}.*re-materialize anomaly_model"):
        AnomalyModel.load(path)


def test_a_damaged_registry_partition_names_itself_and_the_fix(tmp_path):
    wh = Warehouse(tmp_path / "warehouse")
    wh.write_partition(REGISTRY_TABLE, "2026-11-01", pd.DataFrame({"partition": ["2026-11-01"], "service": ["web"],
                                                                   "version": ["abc"]}))
    wh.write_partition(REGISTRY_TABLE, "2026-11-02", pd.DataFrame({"partition": ["2026-11-02"], "service": ["web"],
                                                                   "version": ["def"]}))
    damaged = wh.partition_path(REGISTRY_TABLE, "2026-11-02")
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(WarehouseError, match=r"(?s)2026-11-02\.parquet.*delete it and re-materialize that partition"):
        ModelStore(tmp_path / "models", wh).registry()


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", "\xff\xfe"])
def test_damaged_policy_state_is_refused_with_the_fix(tmp_path, content):
    store = StateStore(tmp_path)
    path = store.write_json("policy-web", WINDOW, {"caution": 1.0})
    path.write_bytes(content.encode("utf-8", "surrogateescape") if content != "\xff\xfe" else b"\xff\xfe")
    with pytest.raises(StateFileError, match=f"policy-web state {path}.*re-materialize"):
        store.read_json("policy-web", WINDOW)


def a_policy_state(seed):
    demand = np.round(np.random.default_rng(seed).uniform(0, 1e4, 4320), 3)
    return {"policy": {"demand": demand, "risk": 0.25, "last_target": {"cpu_scale_up_threshold": 85.0}},
            "in_force": {"cpu_scale_up_threshold": 80.0}}


def test_a_bundle_gives_back_every_services_state_exactly_and_a_run_for_one_keeps_the_others(tmp_path):
    store = StateStore(tmp_path)
    written = {"web": a_policy_state(1), "db": a_policy_state(2)}
    store.write_services("policy", WINDOW, written)
    np.testing.assert_equal(store.read_services("policy", WINDOW), written)  # float64 demand, bit for bit
    store.write_services("policy", WINDOW, {"web": a_policy_state(3)})  # a run for web alone
    np.testing.assert_equal(store.read_services("policy", WINDOW), {"web": a_policy_state(3), "db": a_policy_state(2)})


def test_state_written_per_service_before_bundles_is_carried_on(tmp_path):
    # A home upgraded from a version that wrote state/policy-<service>/<window>.json: the next
    # window must start from what the policy learned, not from nothing.
    store = StateStore(tmp_path)
    legacy = {"policy": {"demand": [1.0, 2.0], "risk": 0.1}, "in_force": {"cpu_scale_up_threshold": 85.0}}
    store.write_json("policy-web", WINDOW, legacy)
    store.write_services("policy", WINDOW, {"db": a_policy_state(2)})  # db already on bundles
    found = store.read_services("policy", WINDOW, ["web", "db", "new"])
    assert found["web"] == legacy and set(found) == {"web", "db"}


@pytest.mark.parametrize("damage", [
    lambda raw: raw[:40],  # truncated
    lambda raw: b"PK\x03\x04 not a zip",
    lambda raw: _npz(documents=np.array([{"evil": 1}], dtype=object)),  # a pickle inside: never loaded
    lambda raw: _npz(documents=np.frombuffer(b'{"web": {"x": {"__array__": "a9"}}}', dtype=np.uint8)),
    lambda raw: _npz(documents=np.frombuffer(b'[1, 2]', dtype=np.uint8)),
])
def test_a_damaged_bundle_is_refused_with_the_file_and_the_fix(tmp_path, damage):
    store = StateStore(tmp_path)
    path = store.write_services("policy", WINDOW, {"web": a_policy_state(1)})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(StateFileError, match=f"policy state {path}.*re-materialize partition {WINDOW}"):
        store.read_services("policy", WINDOW, ["web"])


def _npz(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_damaged_detector_arrays_are_refused_and_never_unpickled(tmp_path):
    store = StateStore(tmp_path)
    path = store.write_arrays("detectors-web", WINDOW, {"level": np.ones(10)})
    # An .npz holding an object array (a pickle inside) must not be loaded.
    np.savez(path.with_suffix(""), level=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(StateFileError, match="corrupt"):
        store.read_arrays("detectors-web", WINDOW)
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(StateFileError, match="re-materialize"):
        store.read_arrays("detectors-web", WINDOW)


@pytest.fixture
def home(tmp_path, monkeypatch):
    config = prepare_demo_home(tmp_path, fresh=True)
    monkeypatch.setenv("NEUROPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    return tmp_path


def test_a_vanished_warehouse_stops_the_pipeline_instead_of_starting_over(home):
    assert materialize(WINDOW).success
    shutil.rmtree(home / "warehouse")  # e.g. the volume is not mounted
    result = materialize("2026-11-01-06:00")
    assert not result.success
    assert "warehouse folder" in failure_text(result) and "is missing" in failure_text(result)
    assert not (home / "warehouse").exists()  # nothing was recreated behind the user's back


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a 2 MiB tmpfs needs root (CI runs as root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def _fill(mount: Path) -> None:
    with open(mount / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_full_disk_keeps_the_previous_versions_and_says_what_to_do(full_disk):
    wh, store = Warehouse(full_disk / "warehouse"), StateStore(full_disk / "state")
    first = pd.DataFrame({"service": ["web"] * 100, "value": np.arange(100.0)})
    wh.write_partition("raw_metrics", WINDOW, first)
    store.write_json("policy-web", WINDOW, {"caution": 1.0})
    _fill(full_disk)
    bigger = pd.DataFrame({"service": ["web"] * 50_000, "value": np.random.default_rng(0).normal(size=50_000)})
    with pytest.raises(WarehouseError, match="No space left|no space left"):
        wh.write_partition("raw_metrics", WINDOW, bigger)
    with pytest.raises(DiskFullError, match="previous version is intact.*Free space"):
        store.write_json("policy-web", WINDOW, {"caution": 2.0, "pad": "x" * 200_000})
    pd.testing.assert_frame_equal(wh.read_partition("raw_metrics", WINDOW), first)
    assert store.read_json("policy-web", WINDOW) == {"caution": 1.0}
    assert not list(full_disk.rglob(".*.tmp"))  # no half-written temp file left to fill the disk further
    (full_disk / "filler").unlink()
    wh.write_partition("raw_metrics", WINDOW, bigger)  # space back: the same write succeeds
    assert len(wh.read_partition("raw_metrics", WINDOW)) == 50_000


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                         st.text(max_size=12))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)), max_leaves=8)
KEYS = ["sla_target", "slo_p95_ms", "cost_budget", "anomaly_sensitivity", "learning_rate", "mode", "policy",
        "services", "rollout", "thresholds", "rate_limits", "source", "model", "paths", "reward", "partitions"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), yaml_values, max_size=4), st.sampled_from(["replace", "merge"]))
def test_fuzzed_ops_config_is_loaded_or_refused_by_name_never_crashes(tmp_path_factory, overrides, how):
    from ruamel.yaml import YAML

    shipped = YAML(typ="safe").load((Path(__file__).resolve().parents[2] / "config" / "ops_config.yaml").read_text())
    doc = dict(overrides) if how == "replace" else {**shipped, **overrides}
    path = tmp_path_factory.mktemp("cfg") / "ops_config.yaml"
    with path.open("w") as fh:
        YAML(typ="safe").dump(doc, fh)
    try:
        cfg = load_ops_config(path, env={}, home=path.parent)
    except ConfigError as exc:
        assert str(exc)  # a named refusal
        return
    # Accepted: every managed threshold is inside its bounds and the sensitivity is usable.
    for name, spec in cfg.thresholds.items():
        assert spec.min <= spec.value <= spec.max, name
    assert 0 < cfg.anomaly_sensitivity < 1


@pytest.mark.parametrize("content, message", [
    ("", "has no rows"),
    ("timestamp,value\nyesterday,1\n", "timestamp 'yesterday' in column 'timestamp' (data row 1) cannot be parsed"),
    ("timestamp,value\n2026-11-01T00:00:00+02:00,high\n", "no numeric value column"),
])
def test_detect_refuses_bad_csv_with_one_line_and_writes_nothing(tmp_path, capsys, content, message):
    from neuropilot_pipeline.cli import main

    (tmp_path / "in.csv").write_text(content)
    assert main(["detect", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out.csv").exists()


def test_detect_verdicts_do_not_depend_on_the_time_zone_the_timestamps_are_written_in(tmp_path):
    from neuropilot_pipeline.core.detectors import detect_dataframe

    ts = pd.date_range("2026-11-01", periods=2000, freq="1min", tz="Europe/Berlin")
    values = np.sin(np.arange(2000) / 60.0) + 2.0
    values[1500] = 12.0
    local = detect_dataframe(pd.DataFrame({"timestamp": [t.isoformat() for t in ts], "value": values}))
    utc = detect_dataframe(pd.DataFrame({"timestamp": [t.tz_convert("UTC").isoformat() for t in ts], "value": values}))
    assert local["is_anomaly"].tolist() == utc["is_anomaly"].tolist() and local["is_anomaly"].iloc[1500]
