"""The warehouse, model versions and chained state on object storage (s3://), against a local
S3-compatible server (moto's, speaking the S3 REST API), through pyarrow's S3 file system.

What a team moving runs onto several machines relies on: the pipeline decides exactly as it
does on disk, nothing of it lands on the run's local disk, and a failed upload loses nothing.
"""

import json
import os
import shutil
import socket
import subprocess

import boto3
import dagster as dg
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from neuropilot_pipeline.assets.partitions import windows_of_day
from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.config import ConfigError, load_ops_config
from neuropilot_pipeline.storage.objects import ObjectFolder
from neuropilot_pipeline.storage.state import StateStore
from neuropilot_pipeline.storage.warehouse import Warehouse, WarehouseError
from neuropilot_pipeline_tests.dagster_results import materializations

BUCKET = "neuropilot-test"
DAY1, DAY2 = "2026-11-01", "2026-11-02"
TABLES = ("raw_metrics", "metric_features", "anomalies", "reward", "threshold_decisions", "model_registry")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A local S3 server, credentials and endpoint in the environment only (as in production)."""
    mp = pytest.MonkeyPatch()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-do-not-log",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        mp.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield {"server": server, "client": client, "port": port}
    server.stop()
    mp.undo()


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def ops_cycle_job():
    """For dg.reconstructable: a run whose every step is a process of its own, as launched runs are."""
    from neuropilot_pipeline.definitions import defs

    return defs.resolve_job_def("ops_cycle")


def _with_env(home, config, env: dict[str, str]) -> pytest.MonkeyPatch:
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUROPILOT_HOME", str(home))
    mp.setenv("NEUROPILOT_CONFIG", str(config))
    for key, value in env.items():
        mp.setenv(key, value)
    return mp


def _run_in_process(home, env: dict[str, str], day2_windows: int, report: bool = False, remote=None):
    """Day 1's four windows, day 1's training, then day 2's first windows, which score with
    the model trained on day 1 and read back from the store."""
    config = prepare_demo_home(home, fresh=True)
    if remote is not None:  # the infrastructure repository's upstream, which every machine pushes to
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        subprocess.run(["git", "-C", str(home / "infra"), "push", "-q", str(remote), "main"], check=True)
    mp = _with_env(home, config, env)
    try:
        from neuropilot_pipeline.definitions import defs

        instance = dg.DagsterInstance.ephemeral()
        for window in windows_of_day(DAY1):
            assert defs.resolve_job_def("ops_cycle").execute_in_process(partition_key=window, instance=instance).success
        assert defs.resolve_job_def("train_model").execute_in_process(partition_key=DAY1, instance=instance).success
        if report:
            assert defs.resolve_job_def("report_job").execute_in_process(partition_key=DAY1, instance=instance).success
        for window in windows_of_day(DAY2)[:day2_windows]:
            result = defs.resolve_job_def("ops_cycle").execute_in_process(partition_key=window, instance=instance)
            assert result.success
        return load_ops_config(config), result
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def both_runs(s3, tmp_path_factory):
    prefix = "prod"
    bucket_env = {
        "NEUROPILOT_PATHS__WAREHOUSE": f"s3://{BUCKET}/{prefix}/warehouse",
        "NEUROPILOT_PATHS__MODELS": f"s3://{BUCKET}/{prefix}/models",
        "NEUROPILOT_PATHS__STATE": f"s3://{BUCKET}/{prefix}/state",
        "NEUROPILOT_PATHS__REPORTS": f"s3://{BUCKET}/{prefix}/reports",
    }
    on_disk_cfg, _ = _run_in_process(tmp_path_factory.mktemp("disk"), {}, day2_windows=2)
    remote = tmp_path_factory.mktemp("git_server") / "infra.git"
    bucket_env["NEUROPILOT_GITOPS__REMOTE"] = str(remote)
    on_s3_cfg, _ = _run_in_process(tmp_path_factory.mktemp("s3"), bucket_env, day2_windows=1, report=True,
                                   remote=remote)

    # Day 2's second window runs on "another machine": a home of its own with nothing but the
    # settings (no clone of the infrastructure repository: it clones gitops.remote itself), every
    # step in its own process. Everything it carries on from is in the bucket and the remote.
    other = tmp_path_factory.mktemp("other_machine")
    shutil.copyfile(on_s3_cfg.config_path, other / "ops_config.yaml")
    (other / "dagster_home").mkdir()
    mp = _with_env(other, other / "ops_config.yaml", bucket_env)
    try:
        with dg.DagsterInstance.local_temp(str(other / "dagster_home")) as instance:
            run = dg.execute_job(dg.reconstructable(ops_cycle_job), instance=instance,
                                 tags={"dagster/partition": windows_of_day(DAY2)[1]})
            assert run.success, [e.message for e in run.all_events if e.is_failure]
            last = materializations(run, "threshold_decision")[-1]
            applied = materializations(run, "terraform_vars")[-1]
    finally:
        mp.undo()
    mp = _with_env(other, other / "ops_config.yaml", bucket_env)
    try:
        other_cfg = load_ops_config()
    finally:
        mp.undo()
    return {"disk": on_disk_cfg, "s3": on_s3_cfg, "other": other_cfg, "last": last, "prefix": prefix,
            "remote": remote, "applied": applied}


def test_pipeline_on_object_storage_decides_exactly_as_on_disk(both_runs):
    disk, s3cfg = both_runs["disk"], both_runs["s3"]
    assert str(s3cfg.warehouse_dir).startswith("s3://")
    on_disk, on_s3 = Warehouse(disk.warehouse_dir), Warehouse(s3cfg.warehouse_dir)
    def rows(wh, cfg, table):
        # Only when and where it ran may differ: the training time, and the home folder named in a path.
        frame = wh.read_table(table).drop(columns=["trained_at"], errors="ignore")
        text = frame.select_dtypes(include=["object", "string"]).columns
        frame[text] = frame[text].apply(lambda col: col.str.replace(str(cfg.home), "HOME", regex=False))
        return frame

    for table in TABLES:
        a = rows(on_disk, disk, table)
        b = rows(on_s3, s3cfg, table)
        b = b.assign(**{c: b[c].str.replace(str(both_runs["other"].home), "HOME", regex=False)
                        for c in b.select_dtypes(include=["object", "string"]).columns})
        assert len(a) > 0, table
        pd.testing.assert_frame_equal(a, b, check_like=True, obj=table)
    # Same model versions (content hashes), loadable from the bucket.
    assert on_disk.read_table("model_registry")["version"].tolist() == on_s3.read_table("model_registry")["version"].tolist()
    # Including the window computed on the other machine from the bucket alone.
    assert windows_of_day(DAY2)[1] in set(on_s3.read_table("threshold_decisions")["partition"])


def test_nothing_of_the_shared_stores_lands_on_the_local_disk(both_runs, s3):
    for home in (both_runs["s3"].home, both_runs["other"].home):
        for folder in ("warehouse", "models"):
            assert not (home / folder).exists(), folder
        # Only the rate-limit ledgers and locks (which need a file lock) stay on the machine.
        local_state = home / "state"
        assert not local_state.exists() or all(p.name.endswith(("ledger.json", ".lock"))
                                               for p in local_state.rglob("*") if p.is_file())
    keys = _keys(s3["client"], both_runs["prefix"] + "/")
    assert any(k.startswith("prod/warehouse/threshold_decisions/2026-11-02-0000") for k in keys)
    assert any(k.startswith("prod/models/web/") and k.endswith(".json") for k in keys)
    assert any(k.startswith("prod/state/policy") for k in keys), sorted({k.split("/")[2] for k in keys})
    assert not any(k.endswith(".tmp") for k in keys)


def test_lineage_metadata_names_the_objects_and_no_credentials(both_runs):
    metadata = both_runs["last"].metadata  # the other machine's decision
    assert str(metadata["path"].value).startswith(f"s3://{BUCKET}/prod/warehouse/threshold_decisions/")
    text = repr({k: v.value for k, v in metadata.items()})
    assert "test-secret-do-not-log" not in text and "test-key-id" not in text


def test_a_failed_upload_leaves_the_previous_partition_whole(s3):
    wh = Warehouse(f"s3://{BUCKET}/outage/warehouse")
    before = pd.DataFrame({"service": ["web"] * 3, "ts": pd.date_range("2026-11-01", periods=3, freq="min", tz="UTC"),
                           "value": [1.0, 2.0, 3.0]})
    wh.write_partition("reward", "2026-11-01-00:00", before)
    s3["server"].stop()
    try:
        with pytest.raises(WarehouseError) as failed:
            wh.write_partition("reward", "2026-11-01-00:00", before.assign(value=99.0))
        assert f"s3://{BUCKET}/outage/warehouse/reward/2026-11-01-0000.parquet" in str(failed.value)
        assert "test-secret-do-not-log" not in str(failed.value)
    finally:
        restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=s3["port"], verbose=False)
        restarted.start()
        s3["server"] = restarted  # the in-process backend keeps the bucket across the restart
    pd.testing.assert_frame_equal(wh.read_partition("reward", "2026-11-01-00:00"), before)


def test_a_damaged_partition_object_names_itself_and_the_fix(s3):
    wh = Warehouse(f"s3://{BUCKET}/damaged/warehouse")
    frame = pd.DataFrame({"service": ["web"], "ts": [pd.Timestamp("2026-11-01", tz="UTC")], "value": [1.0]})
    wh.write_partition("reward", "2026-11-01-00:00", frame)
    wh.write_partition("reward", "2026-11-01-06:00", frame.assign(ts=frame["ts"] + pd.Timedelta(hours=6)))
    s3["client"].put_object(Bucket=BUCKET, Key="damaged/warehouse/reward/2026-11-01-0600.parquet", Body=b"PAR1 cut")
    with pytest.raises(WarehouseError, match=r"reward/2026-11-01-0600.parquet is not a readable Parquet file.*"
                                             r"re-materialize that partition"):
        wh.read_table("reward")
    assert len(wh.read_partition("reward", "2026-11-01-00:00")) == 1  # the others are unaffected


def test_a_missing_bucket_or_warehouse_is_a_clear_error(s3):
    with pytest.raises(WarehouseError, match="bucket exists"):
        Warehouse("s3://no-such-bucket-here/warehouse").ensure_created()
    # Earlier runs wrote a warehouse here (the state says so) but it is gone: stop, do not start over.
    from neuropilot_pipeline.storage.warehouse import WarehouseMissingError

    with pytest.raises(WarehouseMissingError, match=f"s3://{BUCKET}/gone"):
        Warehouse(f"s3://{BUCKET}/gone", expect_existing=True)


def test_state_and_reads_round_trip_through_the_bucket(s3):
    store = StateStore(f"s3://{BUCKET}/roundtrip/state")
    assert store.read_json("policy", "2026-11-01-00:00") is None
    store.write_json("policy", "2026-11-01-00:00", {"epsilon": 0.25, "q": [1, 2, 3]})
    assert store.read_json("policy", "2026-11-01-00:00") == {"epsilon": 0.25, "q": [1, 2, 3]}
    s3["client"].put_object(Bucket=BUCKET, Key="roundtrip/state/policy/2026-11-01-0600.json", Body=b"{not json")
    with pytest.raises(ValueError, match=r"s3://.*2026-11-01-0600.json is corrupt"):
        store.read_json("policy", "2026-11-01-06:00")
    folder = ObjectFolder(f"s3://{BUCKET}/roundtrip")
    assert [p.name for p in folder.list(folder.key("state", "policy"), ".json")] == [
        "2026-11-01-0000.json", "2026-11-01-0600.json"]


@pytest.mark.parametrize("key,url,message", [
    ("infra_repo", "s3://bucket/infra", "only paths.warehouse, paths.models, paths.state, paths.reports may be"),
    ("warehouse", "s3://bucket/wh?secret_key=abc", "secret_key must not be in the URL"),
    ("warehouse", "s3://AKIA:abc@bucket/wh", "credentials must not be in the URL"),
    ("warehouse", "ftp://host/wh", "only s3://, gs://, gcs:// URLs"),
    ("state", "s3:///wh", "names no bucket"),
    ("models", "s3://bucket/models?endpoint=x", "unknown option"),
])
def test_object_storage_settings_are_checked_when_the_config_loads(tmp_path, key, url, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")) as refused:
        load_ops_config(env={f"NEUROPILOT_PATHS__{key.upper()}": url}, home=tmp_path)
    assert "abc" not in str(refused.value)


def test_a_report_written_on_one_machine_is_found_for_delivery_on_another(both_runs, s3):
    from neuropilot_pipeline.assets.deliver import undelivered
    from neuropilot_pipeline.storage.reports import report_store

    keys = _keys(s3["client"], "prod/reports/")
    stem = "prod/reports/daily_report_20261101"
    assert f"{stem}.json" in keys and f"{stem}.html" in keys
    assert sum(k.startswith(stem + "_") and k.endswith(".png") for k in keys) >= 8  # the charts beside the page
    other = both_runs["other"]
    # The retry of an undelivered report runs wherever the daemon launches it.
    assert undelivered(other, StateStore(other.state_dir), "slack", DAY1) == [DAY1]
    report = json.loads(report_store(other).read_text("daily_report_20261101.json"))
    assert report["date"] == DAY1 and "web" in report["services"]
    assert not (other.home / "reports").exists()  # read from the bucket, not a local copy


def test_the_other_machine_cloned_the_infrastructure_and_pushed_its_decision(both_runs):
    other, remote, applied = both_runs["other"], both_runs["remote"], both_runs["applied"].metadata

    def git(path, *args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout

    assert applied["infra_sync"].value == "up to date"  # just cloned
    assert applied["status"].value == {"web": "applied"}
    # Its commit sits on top of the first machine's and is the remote's head: accepted, not rejected.
    assert git(other.infra_repo, "rev-parse", "HEAD") == git(remote, "rev-parse", "main")
    partitions = git(remote, "log", "--format=%(trailers:key=NeuroPilot-Partition,valueonly)", "main").split()
    assert partitions[0] == f"{windows_of_day(DAY2)[1]}/web"
    assert partitions[1] < partitions[0]  # the first machine's latest applied decision, pushed before
