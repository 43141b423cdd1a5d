"""Planted secrets never leave the environment: not into logs, Dagster's event log and compute
logs, metadata, reports, exceptions, commits or the warehouse. Nothing loads a pickle, and the
files NeuroPilot writes are not readable by other users."""

import ast
import os
import subprocess
import threading
from pathlib import Path

import dagster as dg
import pytest

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.core.prometheus import Endpoint
from neuropilot_pipeline_tests.integration.test_notion_delivery import ALL, DB, KEY as NOTION_KEY, server_with
from neuropilot_pipeline_tests.integration.test_report_delivery import SECRET as SLACK_SECRET, SlackServer

PACKAGE = Path(__file__).resolve().parents[2] / "neuropilot_pipeline"
DAY = "2026-11-01"
PLANTED = {
    "PROMETHEUS_BEARER_TOKEN": "planted-prom-token-5d1c",
    "PROMETHEUS_PASSWORD": "planted-prom-password-0b7e",
    "GRAFANA_API_KEY": "glsa_planted-grafana-key-77aa",
    "DAGSTER_PG_PASSWORD": "planted-pg-password-c3d2",
}


@pytest.fixture(scope="module")
def run_with_secrets(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    slack = SlackServer()
    threading.Thread(target=slack.serve_forever, daemon=True).start()
    notion = server_with(ALL)
    config = prepare_demo_home(home, fresh=True)
    mp = pytest.MonkeyPatch()
    for k, v in {**PLANTED, "NEUROPILOT_HOME": str(home), "NEUROPILOT_CONFIG": str(config), "DAGSTER_HOME": str(dagster_home),
                 "NEUROPILOT_MODE": "apply", "NEUROPILOT_ROLLOUT__MONITOR_DAYS": "0",
                 "NEUROPILOT_DELIVERY__BACKOFF_SECONDS": "0.01", "NEUROPILOT_DELIVERY__RETRIES": "1",
                 "SLACK_WEBHOOK_URL": slack.url, "NOTION_API_KEY": NOTION_KEY, "NOTION_DATABASE_ID": DB,
                 "NOTION_BASE_URL": notion.url}.items():
        mp.setenv(k, v)
    slack.script = [500, 500]  # the first delivery fails: error paths are searched too
    from neuropilot_pipeline.definitions import defs

    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        from neuropilot_pipeline.assets.partitions import windows_of_day

        for window in windows_of_day(DAY):
            assert defs.resolve_job_def("ops_cycle").execute_in_process(partition_key=window, instance=instance).success
        assert defs.resolve_job_def("train_model").execute_in_process(partition_key=DAY, instance=instance).success
        for _ in range(2):  # failed delivery, then the retry that succeeds
            assert defs.resolve_job_def("report_job").execute_in_process(partition_key=DAY, instance=instance).success
        events = [str(e) for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
    yield {"home": home, "dagster_home": dagster_home, "events": events, "slack": slack, "notion": notion}
    mp.undo()
    slack.shutdown()
    notion.shutdown()


SECRETS = [*PLANTED.values(), SLACK_SECRET, NOTION_KEY]


def test_the_run_really_used_the_secrets(run_with_secrets):
    assert len(run_with_secrets["slack"].posts) == 1  # posted through the planted webhook, after a failure
    assert run_with_secrets["notion"].pages  # and published with the planted Notion key
    assert len(run_with_secrets["events"]) > 100  # the event log searched below is the real one


def test_no_secret_in_any_file_written(run_with_secrets):
    for root in (run_with_secrets["home"], run_with_secrets["dagster_home"]):  # warehouse, state, reports, models,
        for path in root.rglob("*"):                                           # event log, compute logs, run storage
            if path.is_file():
                data = path.read_bytes()
                for secret in SECRETS:
                    assert secret.encode() not in data, f"{secret} found in {path}"


def test_no_secret_in_dagster_events_metadata_or_commits(run_with_secrets):
    for event in run_with_secrets["events"]:
        for secret in SECRETS:
            assert secret not in event
    repo = run_with_secrets["home"] / "infra"
    history = subprocess.run(["git", "-C", str(repo), "log", "--all", "-p", "--format=%H %an %ae%n%B"],
                             capture_output=True, text=True, check=True).stdout
    assert "NeuroPilot-Partition" in history  # decisions were committed
    for secret in SECRETS:
        assert secret not in history


def test_files_are_not_readable_by_other_users(run_with_secrets):
    home = run_with_secrets["home"]
    checked = 0
    for folder in ("warehouse", "models", "state", "reports"):
        for path in (home / folder).rglob("*"):
            if path.is_file():
                checked += 1
                assert path.stat().st_mode & 0o007 == 0, f"{path} is {oct(path.stat().st_mode & 0o777)}"
    assert checked > 20


def test_nothing_written_is_a_pickle(run_with_secrets):
    for root in (run_with_secrets["home"], run_with_secrets["dagster_home"]):
        for path in root.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                head = path.read_bytes()[:2]
                assert not (len(head) == 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5)), f"{path} is a pickle"


def test_no_code_path_can_load_a_pickle():
    banned_modules = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & banned_modules, f"{path}:{node.lineno}"
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in banned_modules, f"{path}:{node.lineno}"
            elif isinstance(node, ast.Attribute):
                assert node.attr not in ("read_pickle", "to_pickle"), f"{path}:{node.lineno}"
            elif isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, f"{path}:{node.lineno}"
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" \
                    and getattr(node.func.value, "id", None) == "np":
                assert any(k.arg == "allow_pickle" for k in node.keywords), f"np.load without allow_pickle=False: {path}:{node.lineno}"


def test_credentials_never_show_in_reprs_or_urls():
    endpoint = Endpoint("https://user:planted-url-password@prom.example.com", bearer_token="planted-token",
                        username="user", password="planted-password")
    text = repr(endpoint) + endpoint.display_url
    assert "planted" not in text and "prom.example.com" in text
