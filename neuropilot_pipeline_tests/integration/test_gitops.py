"""GitOps against real repositories: a working clone and a bare remote made by the test."""

import subprocess

import pytest

from neuropilot_pipeline.core.gitops import (
    ForeignChangesError, InfraRepo, _git_running_in, PushRejectedError, decision_commit_subject, files_to_check_for_human_changes,
    newest_authors,
)
from neuropilot_pipeline.core.tfvars import apply_tfvars_updates

START = "# web\ncpu_scale_up_threshold = 80 # up\ncpu_scale_down_threshold = 30\n"


def git(path, *args, check=True):
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=check).stdout


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


def _push_from_other_clone(remote, tmp, name, text, file="web/terraform.tfvars"):
    other = tmp / name
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / file).write_text(text)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=H", "-c", "user.email=h@x", "commit", "-qam", name],
                   check=True)
    git(other, "push", "-q", "origin", "main")
    return git(other, "rev-parse", "HEAD").strip()


def test_sync_fast_forwards_to_what_another_machine_pushed_then_commits_on_top(repos):
    repo, remote, tmp = repos
    pushed = _push_from_other_clone(remote, tmp, "machine-b", START.replace("= 30", "= 45"))
    with repo.locked():
        assert repo.sync_with_remote().startswith("fast-forwarded")
        assert repo.sync_with_remote() == "up to date"
    path = repo.path / "web" / "terraform.tfvars"
    assert "cpu_scale_down_threshold = 45" in path.read_text()  # the decision starts from the pushed value
    apply_tfvars_updates(path, {"cpu_scale_up_threshold": 85})
    sha = repo.commit_decision([path], "ai-ops: raise", "why", {})
    assert git(remote, "rev-parse", "main").strip() == sha  # accepted: no rejected push
    assert git(repo.path, "rev-parse", "HEAD~1").strip() == pushed  # no merge commit


def test_sync_refuses_a_diverged_clone_and_changes_nothing(repos):
    repo, remote, tmp = repos
    path = repo.path / "web" / "terraform.tfvars"
    apply_tfvars_updates(path, {"cpu_scale_up_threshold": 85})
    repo.remote = None  # a commit made while the remote was unreachable stays local
    local = repo.commit_decision([path], "ai-ops: raise", "why", {})
    repo.remote = "origin"
    remote_head = _push_from_other_clone(remote, tmp, "human", START.replace("= 30", "= 35"))
    with repo.locked(), pytest.raises(PushRejectedError, match="diverged.*pull --rebase"):
        repo.sync_with_remote()
    assert git(repo.path, "rev-parse", "HEAD").strip() == local
    assert git(remote, "rev-parse", "main").strip() == remote_head


def test_sync_with_an_unreachable_remote_is_a_clear_error(repos):
    repo, _, tmp = repos
    git(repo.path, "remote", "set-url", "origin", str(tmp / "gone.git"))
    with repo.locked(), pytest.raises(Exception, match="could not fetch main from origin"):
        repo.sync_with_remote()


def test_sync_pushes_commits_made_while_the_remote_was_unreachable(repos):
    repo, remote, _ = repos
    path = repo.path / "web" / "terraform.tfvars"
    apply_tfvars_updates(path, {"cpu_scale_up_threshold": 85})
    repo.remote = None
    local = repo.commit_decision([path], "ai-ops: raise", "why", {})
    repo.remote = "origin"
    with repo.locked():
        assert repo.sync_with_remote().startswith("pushed local commits")
    assert git(remote, "rev-parse", "main").strip() == local


def test_a_machine_without_a_clone_clones_the_remote_and_commits_on_top(repos):
    _, remote, tmp = repos
    fresh = InfraRepo(tmp / "pod" / "infra", remote=str(remote))
    assert fresh.clone_if_missing() is True
    assert fresh.clone_if_missing() is False  # once
    path = fresh.path / "web" / "terraform.tfvars"
    apply_tfvars_updates(path, {"cpu_scale_up_threshold": 85})
    sha = fresh.commit_decision([path], "ai-ops: raise", "why", {})
    assert git(remote, "rev-parse", "main").strip() == sha
    with pytest.raises(Exception, match="must be the repository's address"):
        InfraRepo(tmp / "other" / "infra", remote="origin").clone_if_missing()


FLEET = [f"svc{i:02d}" for i in range(12)]


@pytest.fixture
def fleet(tmp_path):
    remote = tmp_path / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo = InfraRepo.init_demo(tmp_path / "fleet", {f"{s}/terraform.tfvars": START for s in FLEET})
    git(repo.path, "remote", "add", "origin", str(remote))
    git(repo.path, "push", "-q", "origin", "main")
    repo.remote = "origin"
    return repo, remote


def fleet_changes(repo, window="2026-11-01-06:00", services=FLEET):
    return [(repo.path / s / "terraform.tfvars", START.replace("= 30", f"= {31 + i}"), f"ai-ops: lower {s}",
             f"why {s}", {"NeuroPilot-Run-Id": "run-1", "NeuroPilot-Partition": f"{window}/{s}"})
            for i, s in enumerate(services)]


def count_git_calls(monkeypatch) -> list:
    calls, real = [], InfraRepo.git

    def counting(self, *args, **kwargs):
        calls.append(args[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InfraRepo, "git", counting)
    return calls


def trailer(repo, sha, key="NeuroPilot-Partition"):
    return git(repo.path, "log", "-1", f"--format=%(trailers:key={key},valueonly)", sha).strip()


def test_a_batch_makes_one_commit_per_service_with_a_handful_of_other_git_calls(fleet, monkeypatch):
    repo, remote = fleet
    changes = fleet_changes(repo)
    calls = count_git_calls(monkeypatch)
    with repo.locked():
        shas = repo.apply_file_changes(changes)
    n = len(FLEET)
    # Users keep reverting one service's change: still one commit per decision, in order...
    assert git(repo.path, "log", "--format=%H", "-n", str(n)).split()[::-1] == shas
    assert int(git(repo.path, "rev-list", "--count", "HEAD")) == n + 1
    for (path, text, subject, _, _), s, sha in zip(changes, FLEET, shas):
        assert trailer(repo, sha) == f"2026-11-01-06:00/{s}"
        assert git(repo.path, "log", "-1", "--format=%s", sha).strip() == subject
        assert git(repo.path, "diff", "--name-only", f"{sha}~1", sha).strip() == f"{s}/terraform.tfvars"
        assert path.read_text() == text
        assert repo.find_commit_for_partition(f"2026-11-01-06:00/{s}") == sha
    assert git(remote, "rev-parse", "main").strip() == shas[-1]  # pushed
    assert not repo.journal_path.exists() and not repo.uncommitted([c[0] for c in changes])
    # ...but not five git processes per service: one commit each, plus a few for the batch.
    batch_calls = calls[:calls.index("push") + 1]
    assert batch_calls.count("commit") == n and batch_calls.count("push") == 1
    assert len(batch_calls) <= n + 6, batch_calls

    # Re-applying the same window finds each decision's commit, with one look-up for all.
    del calls[:]
    with repo.locked():
        assert repo.apply_file_changes(changes) == shas
    assert calls == ["status", "log"]
    assert int(git(repo.path, "rev-list", "--count", "HEAD")) == n + 1


def test_a_batch_with_one_hand_edited_file_writes_nothing(fleet):
    repo, remote = fleet
    edited = repo.path / FLEET[5] / "terraform.tfvars"
    edited.write_text(START.replace("80", "70"))
    head = git(repo.path, "rev-parse", "HEAD")
    with repo.locked(), pytest.raises(ForeignChangesError, match=f"{FLEET[5]}/terraform.tfvars in .* has uncommitted "
                                                                  "edits that NeuroPilot did not make"):
        repo.apply_file_changes(fleet_changes(repo))
    assert git(repo.path, "rev-parse", "HEAD") == head and not repo.journal_path.exists()
    assert repo.uncommitted([repo.path / s for s in FLEET]) == [f"{FLEET[5]}/terraform.tfvars"]
    assert edited.read_text() == START.replace("80", "70")


def test_a_batch_adds_files_git_does_not_track_yet(fleet):
    repo, _ = fleet
    changes = fleet_changes(repo, services=["svc00", "new-a", "svc01", "new-b"])
    with repo.locked():
        shas = repo.apply_file_changes(changes)
    assert [trailer(repo, sha) for sha in shas] == [f"2026-11-01-06:00/{s}" for s in ["svc00", "new-a", "svc01", "new-b"]]
    for sha, s in zip(shas, ["svc00", "new-a", "svc01", "new-b"]):
        assert git(repo.path, "diff", "--name-only", f"{sha}~1", sha).strip() == f"{s}/terraform.tfvars"
    assert not git(repo.path, "status", "--porcelain")


def test_a_rejected_push_of_a_batch_is_reported_and_the_commits_stay_local(fleet, tmp_path):
    repo, remote = fleet
    _push_from_other_clone(remote, tmp_path, "human", START.replace("= 30", "= 35"), file="svc03/terraform.tfvars")
    remote_head = git(remote, "rev-parse", "main")
    with repo.locked(), pytest.raises(PushRejectedError, match="never force-pushes"):
        repo.apply_file_changes(fleet_changes(repo))
    assert git(remote, "rev-parse", "main") == remote_head
    assert int(git(repo.path, "rev-list", "--count", "HEAD")) == len(FLEET) + 1
    with repo.locked():  # every entry is committed: nothing left to recover
        assert repo.recover_interrupted_apply().startswith("nothing to recover for 12 files of the interrupted batch: 12 committed")


def test_the_newest_author_of_each_file_is_found_however_far_back(tmp_path):
    # A person's change to one service, then a month of NeuroPilot commits to another: the
    # look-up that decides which files get the full human-override check stops reading history
    # once it has every file, and must still find the person's commit far back.
    files = {f"{s}/terraform.tfvars": START for s in ("web", "api", "idle")}
    repo = InfraRepo.init_demo(tmp_path / "infra", files)
    (repo.path / "web" / "terraform.tfvars").write_text(START.replace("80", "75"))
    git(repo.path, "-c", "user.name=Alice", "-c", "user.email=alice@example.com", "commit", "-qam", "web: 75")
    api = repo.path / "api" / "terraform.tfvars"
    for i in range(40):
        api.write_text(START.replace("30", str(31 + i)))
        repo.commit_decision([api], f"ai-ops: {i}", "why", {})
    found = newest_authors(repo, list(files))
    assert found["web/terraform.tfvars"] == "Alice" and found["api/terraform.tfvars"] == "NeuroPilot"
    assert found["idle/terraform.tfvars"] == git(repo.path, "log", "-1", "--format=%an", "--",
                                                  "idle/terraform.tfvars").strip()
    assert files_to_check_for_human_changes(repo, [repo.path / f for f in files]) == {"web/terraform.tfvars"} | (
        {"idle/terraform.tfvars"} if found["idle/terraform.tfvars"] != repo.author_name else set())
    # Stopping early leaves no git process behind.
    assert subprocess.run(["pgrep", "-f", f"git -C {repo.path} log"], capture_output=True).returncode == 1


def test_gits_automatic_gc_is_done_when_the_commit_that_started_it_returns(fleet, tmp_path):
    # git packs its loose objects once there are many (~6,700: 100 services commit that in 17
    # windows), by default in a detached background process. That process deleted object
    # folders while the next window swept .git for stale locks, and a month's backfill failed.
    repo, _ = fleet
    files = []
    for i in range(3000):  # loose objects, as thousands of commits leave them
        files.append(tmp_path / f"object{i}")
        files[-1].write_text(f"loose object {i}")
    subprocess.run(["git", "-C", str(repo.path), "hash-object", "-w", "--stdin-paths"], check=True, text=True,
                   input="\n".join(map(str, files)), capture_output=True)
    git(repo.path, "config", "gc.auto", "1")  # and a threshold they are far above
    # Every git command NeuroPilot runs is told to gc in the foreground, whatever the user's
    # git configuration says...
    assert repo.git("config", "--get", "gc.autoDetach").stdout.strip() == "false"
    assert git(repo.path, "config", "--get", "gc.autoDetach", check=False) == ""
    with repo.locked():
        repo.apply_file_changes(fleet_changes(repo, services=FLEET[:1]))
    assert _git_running_in(repo.path) == []  # no gc left running in the background...
    counts = dict(line.split(": ") for line in git(repo.path, "count-objects", "-v").splitlines())
    assert int(counts["packs"]) >= 1  # ...because it ran, and finished, inside the commit
