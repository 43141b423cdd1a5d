"""Monitor mode: decisions show their would-be diff; nothing is written or committed."""

import subprocess

import dagster as dg

from neuropilot_pipeline.cli import prepare_demo_home


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
    decision = result.asset_materializations_for_node("threshold_decision")[-1]
    assert decision.metadata["changed_thresholds"].value > 0, "the policy proposed nothing to preview"
    diff = decision.metadata["would_be_diff"].value
    assert "-cpu_scale_up_threshold   = 80" in diff and "+cpu_scale_up_threshold" in diff
    applied = result.asset_materializations_for_node("terraform_vars")[-1]
    assert applied.metadata["applied"].value == 0
    assert tfvars.read_bytes() == before
    log = subprocess.run(["git", "-C", str(tmp_path / "infra"), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(log) == 1  # only the humans' initial commit
