"""GitOps against real repositories: a working clone and a bare remote made by the test."""

import subprocess

import pytest

from neuropilot_pipeline.core.gitops import (
    ForeignChangesError, InfraRepo, PushRejectedError, decision_commit_subject,
)
from neuropilot_pipeline.core.tfvars import apply_tfvars_updates

START = "# web\ncpu_scale_up_threshold = 80 # up\ncpu_scale_down_threshold = 30\n"


def git(path, *args):
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repos(tmp_path):
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo = InfraRepo.init_demo(tmp_path / "infra", {"web/terraform.tfvars": START})
    git(repo.path, "remote", "add", "origin", str(remote))
    git(repo.path, "push", "-q", "origin", "main")
    repo.remote = "origin"
    return repo, remote, tmp_path


def test_one_commit_per_decision_with_trailers_and_none_when_unchanged(repos):
    repo, remote, _ = repos
    path = repo.path / "web" / "terraform.tfvars"
    repo.assert_no_foreign_changes([path])
    apply_tfvars_updates(path, {"cpu_scale_down_threshold": 40})
    subject = decision_commit_subject({"cpu_scale_down_threshold": 30}, {"cpu_scale_down_threshold": 40}, 0.82, 99.97,
                                      "3f2a9c1d77")
    assert subject == "ai-ops: raise cpu_scale_down_threshold 30→40 (reward +0.82, SLA 99.970%, model 3f2a9c1d)"
    sha = repo.commit_decision([path], subject, "SLA met, cost high",
                               {"NeuroPilot-Run-Id": "run-1", "NeuroPilot-Partition": "2026-11-01-06:00/web"})
    message = git(repo.path, "log", "-1", "--format=%B")
    assert message.startswith(subject) and "NeuroPilot-Run-Id: run-1" in message
    assert git(repo.path, "log", "-1", "--format=%an") == "NeuroPilot\n"
    assert git(remote, "rev-parse", "main").strip() == sha  # pushed
    assert repo.find_commit_for_partition("2026-11-01-06:00/web") == sha
    assert repo.commit_decision([path], subject, "again", {}) is None
    assert int(git(repo.path, "rev-list", "--count", "HEAD")) == 2


def test_foreign_uncommitted_edit_is_refused(repos):
    repo, _, _ = repos
    path = repo.path / "web" / "terraform.tfvars"
    path.write_text(START.replace("80", "70"))
    with pytest.raises(ForeignChangesError, match="uncommitted edits that NeuroPilot did not make"):
        repo.assert_no_foreign_changes([path])


def test_rejected_push_is_reported_never_forced(repos):
    repo, remote, tmp = repos
    other = tmp / "other"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / "README").write_text("someone else\n")
    git(other, "add", "README")
    subprocess.run(["git", "-C", str(other), "-c", "user.name=H", "-c", "user.email=h@x", "commit", "-qm", "human"], check=True)
    git(other, "push", "-q", "origin", "main")
    remote_head = git(remote, "rev-parse", "main")
    path = repo.path / "web" / "terraform.tfvars"
    apply_tfvars_updates(path, {"cpu_scale_up_threshold": 85})
    with pytest.raises(PushRejectedError, match="never force-pushes"):
        repo.commit_decision([path], "ai-ops: raise", "why", {})
    assert git(remote, "rev-parse", "main") == remote_head  # the human's commit survives


def test_wrong_branch_checked_out_is_refused_with_the_fix(repos):
    repo, _, _ = repos
    git(repo.path, "switch", "-q", "-c", "feature")
    with pytest.raises(Exception, match="gitops.branch is 'main'.*switch main"):
        repo.commit_decision([repo.path / "web" / "terraform.tfvars"], "ai-ops: x", "y", {})
