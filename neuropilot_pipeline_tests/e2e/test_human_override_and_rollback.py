"""A human edits a managed threshold: NeuroPilot adopts it, holds it, and can roll back."""

import subprocess

import dagster as dg
import hcl2
import pytest

from neuropilot_pipeline.cli import main as cli_main, prepare_demo_home
from neuropilot_pipeline.core.gitops import InfraRepo, human_changes
from neuropilot_pipeline.storage.warehouse import Warehouse
from neuropilot_pipeline_tests.dagster_results import materializations

WINDOWS = ["2026-11-01-00:00", "2026-11-01-06:00", "2026-11-01-12:00", "2026-11-01-18:00"]


def git(path, *args, user="Alice"):
    return subprocess.run(["git", "-C", str(path), "-c", f"user.name={user}", "-c", "user.email=alice@example.com",
                           *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("override")
    config = prepare_demo_home(home, fresh=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("NEUROPILOT_HOME", str(home))
    mp.setenv("NEUROPILOT_CONFIG", str(config))
    mp.setenv("NEUROPILOT_ROLLOUT__MONITOR_DAYS", "0")
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    yield home
    mp.undo()


def run(window):
    from neuropilot_pipeline.definitions import defs

    result = defs.resolve_job_def("ops_cycle").execute_in_process(partition_key=window,
                                                                  instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def test_a_human_commit_is_adopted_held_and_reported_then_rolled_back(home):
    tfvars = home / "infra" / "web" / "terraform.tfvars"
    for window in WINDOWS[:2]:
        run(window)
    log = git(home / "infra", "log", "--format=%an %s")
    assert "NeuroPilot ai-ops:" in log, "the policy made no change to adopt against"

    # Alice changes the scale-down threshold by hand and commits it.
    text = tfvars.read_text()
    current = hcl2.loads(text)["cpu_scale_down_threshold"]
    tfvars.write_text(text.replace(f"cpu_scale_down_threshold = {current}", "cpu_scale_down_threshold = 45", 1))
    git(home / "infra", "commit", "-qam", "hand-tune scale-down")
    changes = human_changes(InfraRepo(home / "infra"), tfvars, ["cpu_scale_down_threshold"])
    assert [(c.var, c.new, c.author) for c in changes] == [("cpu_scale_down_threshold", 45, "Alice")]

    # The next cycle records the override instead of writing over it...
    result = run(WINDOWS[2])
    applied = materializations(result, "terraform_vars")[-1]
    assert "human override of cpu_scale_down_threshold" in applied.metadata["status"].value["web"]
    assert hcl2.loads(tfvars.read_text())["cpu_scale_down_threshold"] == 45
    # ...and the decision after it starts from the human's value and holds it.
    run(WINDOWS[3])
    wh = Warehouse(home / "warehouse")
    d = wh.read_partitions("threshold_decisions", [WINDOWS[3]]).iloc[0]
    assert d["old_cpu_scale_down_threshold"] == 45 and d["new_cpu_scale_down_threshold"] == 45
    assert d["action_cpu_scale_down_threshold"] == "hold" and "by Alice" in d["reason"]
    assert hcl2.loads(tfvars.read_text())["cpu_scale_down_threshold"] == 45
    overrides = wh.query("SELECT * FROM human_overrides")
    assert list(overrides["author"]) == ["Alice"] and list(overrides["value"]) == ["45"]

    # Roll back to the first decision: a new commit with that decision's values.
    first_values = hcl2.loads(git(home / "infra", "show", f"{_sha_for(home, WINDOWS[0])}:web/terraform.tfvars"))
    assert cli_main(["rollback", "--home", str(home), "--to", WINDOWS[0]]) == 0
    now = hcl2.loads(tfvars.read_text())
    for name in ("cpu_scale_up_threshold", "cpu_scale_down_threshold"):
        assert now[name] == first_values[name]
    assert git(home / "infra", "log", "-1", "--format=%an %s").startswith(f"NeuroPilot ai-ops: rollback to {WINDOWS[0]}")


def _sha_for(home, window):
    return InfraRepo(home / "infra").find_commit_for_partition(f"{window}/web")


def test_with_a_remote_a_change_pushed_there_is_found_and_decisions_build_on_it(tmp_path, monkeypatch):
    """With gitops.remote, people push to the remote, not into NeuroPilot's clone: the sensor
    fetches before it looks, and every apply starts from the remote's branch (fast-forward)."""
    home = tmp_path / "home"
    config = prepare_demo_home(home, fresh=True)
    remote = tmp_path / "infra.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(home / "infra", "remote", "add", "origin", str(remote))
    git(home / "infra", "push", "-q", "origin", "main")
    for key, value in {"NEUROPILOT_HOME": str(home), "NEUROPILOT_CONFIG": str(config),
                       "NEUROPILOT_ROLLOUT__MONITOR_DAYS": "0", "NEUROPILOT_GITOPS__REMOTE": "origin"}.items():
        monkeypatch.setenv(key, value)
    for window in WINDOWS[:2]:
        run(window)
    assert git(remote, "log", "--format=%an", "main").startswith("NeuroPilot")  # decisions are pushed

    alice = tmp_path / "alice"
    subprocess.run(["git", "clone", "-q", str(remote), str(alice)], check=True)
    tfvars = alice / "web" / "terraform.tfvars"
    text = tfvars.read_text()
    current = hcl2.loads(text)["cpu_scale_down_threshold"]
    tfvars.write_text(text.replace(f"cpu_scale_down_threshold = {current}", "cpu_scale_down_threshold = 45", 1))
    git(alice, "commit", "-qam", "hand-tune scale-down")
    git(alice, "push", "-q", "origin", "main")

    from neuropilot_pipeline.automation import human_override_sensor
    from neuropilot_pipeline.definitions import defs

    request = human_override_sensor.evaluate_tick(dg.build_sensor_context(definitions=defs)).run_requests
    assert [r.tags["neuropilot/overrides"] for r in request] == ["web:cpu_scale_down_threshold"]
    # Meanwhile Bob pushes an unrelated change: the next apply must start from it.
    (alice / "README.md").write_text("owned by the platform team\n")
    git(alice, "add", "README.md")
    git(alice, "commit", "-qm", "readme", user="Bob")
    git(alice, "push", "-q", "origin", "main")
    result = run(WINDOWS[2])
    applied = materializations(result, "terraform_vars")[-1]
    assert applied.metadata["infra_sync"].value.startswith("fast-forwarded")
    assert (home / "infra" / "README.md").exists()
    assert "human override of cpu_scale_down_threshold" in applied.metadata["status"].value["web"]
    run(WINDOWS[3])
    d = Warehouse(home / "warehouse").read_partition("threshold_decisions", WINDOWS[3]).iloc[0]
    assert d["old_cpu_scale_down_threshold"] == 45 and d["new_cpu_scale_down_threshold"] == 45 and "by Alice" in d["reason"]
    assert "Alice" in git(remote, "log", "--format=%an", "main")
    assert git(remote, "rev-parse", "main") == git(home / "infra", "rev-parse", "HEAD")
