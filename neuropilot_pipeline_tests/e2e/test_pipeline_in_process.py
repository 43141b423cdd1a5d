"""The whole asset graph, materialized in process over two consecutive days, as the demo does."""

import json
import subprocess

import dagster as dg
import hcl2
import pytest

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline.assets.partitions import windows_of_day
from neuropilot_pipeline.storage.warehouse import Warehouse
from neuropilot_pipeline_tests.dagster_results import materializations

DAY1, DAY2 = "2026-11-01", "2026-11-02"


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    config = prepare_demo_home(home, fresh=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUROPILOT_HOME", str(home))
    mp.setenv("NEUROPILOT_CONFIG", str(config))
    from neuropilot_pipeline.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    results = {}

    def run(job, key):
        result = defs.resolve_job_def(job).execute_in_process(partition_key=key, instance=instance)
        results[(job, key)] = result
        return result

    for day in (DAY1, DAY2):
        for window in windows_of_day(day):
            run("ops_cycle", window)
        run("train_model", day)
    run("report_job", DAY2)
    yield {"home": home, "config": config, "instance": instance, "results": results}
    mp.undo()


def materialization(result, asset):
    mats = materializations(result, asset)
    assert mats, f"{asset} was not materialized"
    return mats[-1]


def test_every_partition_of_two_days_landed_in_the_warehouse(pipeline_run):
    wh = Warehouse(pipeline_run["home"] / "warehouse")
    assert wh.query("SELECT count(*) AS n FROM raw_metrics")["n"][0] == 2 * 1440
    for table in ("raw_metrics", "metric_features", "anomalies", "reward", "threshold_decisions", "applied_changes"):
        assert len(wh.partition_files(table)) == 8, table
    raw = wh.query("SELECT * FROM raw_metrics")
    for column in ("cpu_percent", "memory_percent", "p95_latency_ms", "error_rate_percent", "request_rate_per_s",
                   "db_query_p95_ms", "instance_count", "cost_usd"):
        assert raw[column].notna().all(), column


def test_second_model_version_is_warm_started_with_a_new_data_version(pipeline_run):
    results = pipeline_run["results"]
    first = materialization(results[("train_model", DAY1)], "anomaly_model")
    second = materialization(results[("train_model", DAY2)], "anomaly_model")
    assert first.metadata["mode"].value == "initial"
    assert second.metadata["mode"].value == "warm_start"
    v1, v2 = first.metadata["model_version"].value, second.metadata["model_version"].value
    assert v1 != v2
    assert first.tags["dagster/data_version"] == v1 and second.tags["dagster/data_version"] == v2
    models = pipeline_run["home"] / "models" / "web"
    assert {p.stem for p in models.glob("*.json")} == {v1, v2}
    reg = Warehouse(pipeline_run["home"] / "warehouse").query("SELECT * FROM model_registry ORDER BY partition")
    assert list(reg["version"]) == [v1, v2] and reg["previous_version"].iloc[1] == v1
    assert {"trained_at", "window_start", "window_end", "samples", "loss", "converged", "n_components"} <= set(reg.columns)


def test_decision_metadata_names_its_model_anomalies_and_reward(pipeline_run):
    window = windows_of_day(DAY2)[1]
    mat = materialization(pipeline_run["results"][("ops_cycle", window)], "threshold_decision")
    reg = Warehouse(pipeline_run["home"] / "warehouse").query("SELECT * FROM model_registry ORDER BY partition")
    assert mat.metadata["model_version"].value == reg["version"].iloc[0]
    assert mat.metadata["model_partition"].value == DAY1
    assert mat.metadata["anomalies_partition"].value == window
    assert mat.metadata["reward_partition"].value == window


def test_day_one_runs_without_a_model_and_says_so(pipeline_run):
    mat = materialization(pipeline_run["results"][("ops_cycle", windows_of_day(DAY1)[0])], "threshold_decision")
    assert "none yet" in mat.metadata["model_version"].value


def test_report_json_has_every_section(pipeline_run):
    path = pipeline_run["home"] / "reports" / "daily_report_20261102.json"
    report = json.loads(path.read_text())
    web = report["services"]["web"]
    for section in ("health", "trends", "anomalies", "scaling_actions", "thresholds", "cost", "learning",
                    "recommendations", "sla"):
        assert section in web, section
    assert set(web["health"]["components"]) == {"latency", "errors", "cpu", "memory"}
    assert web["learning"]["model_version"] is not None
    assert web["sla"]["minutes"] == 1440


def test_applied_decisions_are_in_tfvars_and_in_git(pipeline_run):
    home = pipeline_run["home"]
    tfvars = home / "infra" / "web" / "terraform.tfvars"
    values = hcl2.loads(tfvars.read_text())
    wh = Warehouse(home / "warehouse")
    applied = wh.query("SELECT * FROM applied_changes ORDER BY partition")
    last = applied.iloc[-1]
    assert float(values["cpu_scale_up_threshold"]) == last["value_cpu_scale_up_threshold"]
    log = subprocess.run(["git", "-C", str(home / "infra"), "log", "--format=%s"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    n_applied = int(applied["applied"].sum())
    assert len([line for line in log if line.startswith("ai-ops:")]) == n_applied


def test_html_report_renders_with_every_chart_in_a_real_browser(pipeline_run, tmp_path):
    import re
    import shutil

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required (apt-get install chromium); .ci/run installs it"
    page = pipeline_run["home"] / "reports" / "daily_report_20261102.html"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    charts = int(re.search(r'data-charts="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-charts-loaded="(\d+)"', dom).group(1))
    assert charts >= 10 and loaded == charts  # 8 metrics, thresholds, instances, cost
    shot = tmp_path / "report.png"
    subprocess.run(flags + ["--window-size=1000,2400", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    assert shot.stat().st_size > 50_000
    report = pipeline_run["results"][("report_job", DAY2)].asset_materializations_for_node("daily_report")[-1]
    assert report.metadata["report"].value.startswith("# NeuroPilot daily report — 2026-11-02")


def test_forecast_alerts_start_once_two_days_of_history_exist(pipeline_run):
    results = pipeline_run["results"]
    early = materialization(results[("ops_cycle", windows_of_day(DAY1)[0])], "forecast_alerts")
    assert early.metadata["forecast"].value == "needs two days of history"
    late = materialization(results[("ops_cycle", windows_of_day(DAY2)[3])], "forecast_alerts")
    assert late.metadata["forecast"].value == "next 6 h"
    table = Warehouse(pipeline_run["home"] / "warehouse").read_partitions("forecast_alerts", [windows_of_day(DAY2)[3]])
    assert set(table["metric"]) == {"cpu_percent", "p95_latency_ms", "error_rate_percent"}


def test_explain_prints_the_chain_from_the_instance(pipeline_run):
    from neuropilot_pipeline.lineage import explain, format_chain

    window = windows_of_day(DAY2)[1]
    chain = explain(pipeline_run["instance"], window)
    assets = [link.asset for link in chain]
    assert assets == ["terraform_vars", "threshold_decision", "reward", "anomalies", "anomaly_model",
                      "metric_features", "raw_metrics"]
    run_id = pipeline_run["results"][("ops_cycle", window)].run_id
    assert all(link.run_id == run_id for link in chain if link.asset != "anomaly_model")
    model = next(link for link in chain if link.asset == "anomaly_model")
    assert model.partition == DAY1 and model.run_id == pipeline_run["results"][("train_model", DAY1)].run_id
    text = format_chain(chain)
    assert f"anomaly_model [{DAY1}]" in text and "training_window" in text and "sla_percent" in text
