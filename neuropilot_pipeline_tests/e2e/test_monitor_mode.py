"""Monitor mode: decisions show their would-be diff; nothing is written or committed."""

import subprocess

import dagster as dg

from neuropilot_pipeline.cli import prepare_demo_home
from neuropilot_pipeline_tests.dagster_results import materializations


def test_monitor_mode_previews_and_changes_nothing(tmp_path, monkeypatch):
    config = prepare_demo_home(tmp_path, fresh=True)
    monkeypatch.setenv("NEUROPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    monkeypatch.setenv("NEUROPILOT_MODE", "monitor")
    tfvars = tmp_path / "infra" / "web" / "terraform.tfvars"
    before = tfvars.read_bytes()
    from neuropilot_pipeline.definitions import defs

    result = defs.resolve_job_def("ops_cycle").execute_in_process(partition_key="2026-11-01-00:00",
                                                                  instance=dg.DagsterInstance.ephemeral())
    decision = materializations(result, "threshold_decision")[-1]
    assert decision.metadata["changed_thresholds"].value > 0, "the policy proposed nothing to preview"
    diff = decision.metadata["would_be_diff"].value
    # The preview is a unified diff of terraform.tfvars: each changed variable loses its old
    # line and gets a new one.
    def names(sign):
        return {line[1:].split("=")[0].strip() for line in diff.splitlines()
                if line.startswith(sign) and not line.startswith(sign * 3)}
    assert names("-") and names("-") == names("+"), diff
    assert "-cpu_scale_down_threshold = 30" in diff, diff  # the demo's 80/30 start: scale-down moves first
    applied = materializations(result, "terraform_vars")[-1]
    assert applied.metadata["applied"].value == 0
    assert tfvars.read_bytes() == before
    log = subprocess.run(["git", "-C", str(tmp_path / "infra"), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(log) == 1  # only the humans' initial commit


def test_no_more_changes_applied_per_day_than_the_limit(tmp_path, monkeypatch):
    config = prepare_demo_home(tmp_path, fresh=True)
    monkeypatch.setenv("NEUROPILOT_HOME", str(tmp_path))
    monkeypatch.setenv("NEUROPILOT_CONFIG", str(config))
    monkeypatch.setenv("NEUROPILOT_ROLLOUT__MONITOR_DAYS", "0")
    monkeypatch.setenv("NEUROPILOT_RATE_LIMITS__MAX_APPLIED_CHANGES_PER_DAY", "1")
    from neuropilot_pipeline.definitions import defs
    from neuropilot_pipeline.storage.warehouse import Warehouse

    instance = dg.DagsterInstance.ephemeral()
    for window in ("2026-11-01-00:00", "2026-11-01-06:00", "2026-11-01-12:00"):
        assert defs.resolve_job_def("ops_cycle").execute_in_process(partition_key=window, instance=instance).success
    applied = Warehouse(tmp_path / "warehouse").query("SELECT * FROM applied_changes ORDER BY partition")
    wanted = Warehouse(tmp_path / "warehouse").query(
        "SELECT count(*) AS n FROM threshold_decisions WHERE new_cpu_scale_up_threshold != old_cpu_scale_up_threshold"
        " OR new_cpu_scale_down_threshold != old_cpu_scale_down_threshold")
    assert wanted["n"][0] >= 2, "the scenario needs at least two proposed changes"
    assert int(applied["applied"].sum()) == 1
    assert applied["status"].str.startswith("held: 1 changes applied today").any()
    log = subprocess.run(["git", "-C", str(tmp_path / "infra"), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len([l for l in log if l.startswith("ai-ops:")]) == 1
