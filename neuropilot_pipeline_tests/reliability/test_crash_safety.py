"""SIGKILL in the middle of every kind of write NeuroPilot makes: afterwards nothing is
half-written, nothing is lost, and the next run carries on (finishing an interrupted commit)."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuropilot_pipeline.core.gitops import InfraRepo
from neuropilot_pipeline.core.gmm import AnomalyModel
from neuropilot_pipeline.core.tfvars import parse_tfvars_text, read_tfvars
from neuropilot_pipeline.storage.state import StateStore
from neuropilot_pipeline.storage.warehouse import Warehouse

from .crash_child import PARTITION, thresholds

DEMO_TFVARS = Path(__file__).resolve().parents[2] / "neuropilot_pipeline" / "data" / "demo_infra" / "terraform.tfvars"
KILLS = 10


def start(mode: str, root: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "neuropilot_pipeline_tests.reliability.crash_child", mode, str(root),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    return proc


def kill_mid_run(mode: str, root: Path, *args: str, seed: int, after: str = "READY") -> None:
    """Start the writer, wait for it to print `after`, let it write for a random while, then
    SIGKILL its whole process group."""
    proc = start(mode, root, *args)
    line = proc.stdout.readline()
    assert line.strip() == "READY", proc.stderr.read()
    while line.strip() != after:
        line = proc.stdout.readline()
        assert line, f"writer exited before {after}: {proc.stderr.read()}"
    time.sleep(random.Random(seed).uniform(0.05, 0.8))
    assert proc.poll() is None, f"writer exited early: {proc.stderr.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".*.tmp"))


def test_parquet_partition_is_whole_after_every_kill(tmp_path):
    wh = Warehouse(tmp_path / "warehouse")
    for i in range(KILLS):
        kill_mid_run("parquet", wh.root, "400000", seed=i)
        if not wh.has_partition("raw_metrics", PARTITION):
            continue  # killed before the first write finished: nothing published, nothing to check
        df = wh.read_partition("raw_metrics", PARTITION)  # parses: never a torn file
        assert len(df) == 400_000 and df["generation"].nunique() == 1
        assert len(wh.query("SELECT * FROM raw_metrics")) == 400_000  # the DuckDB view sees it whole too
    assert wh.has_partition("raw_metrics", PARTITION), "no write completed in any run: the test proved nothing"
    # A killed writer's temp file is removed by the next writer of that file, and only then.
    leftovers = temp_files(wh.root)
    wh.write_partition("raw_metrics", PARTITION, wh.read_partition("raw_metrics", PARTITION))
    assert not temp_files(wh.root), f"abandoned temp files survived the next write: {leftovers}"


def test_detector_and_policy_state_is_whole_after_every_kill(tmp_path):
    store = StateStore(tmp_path / "state")
    for i in range(KILLS):
        kill_mid_run("state", store.root, seed=100 + i)
        arrays = store.read_arrays("detector", PARTITION)
        doc = store.read_json("policy", PARTITION)
        if arrays is not None:
            assert len(arrays["level"]) == 400_000 and (arrays["level"] == arrays["generation"][0]).all()
        if doc is not None:
            assert doc["weights"] == [doc["generation"]] * 20_000
    assert store.read_json("policy", PARTITION) is not None


def test_model_versions_all_load_after_kills_mid_save(tmp_path):
    models = tmp_path / "models"
    for i in range(6):
        # Half the runs are killed only after a first save, so that there is always something to
        # check even when a loaded machine lets every random delay end before the first save.
        kill_mid_run("model", models, seed=200 + i, after="SAVED" if i % 2 else "READY")
    saved = list(models.glob("*.json"))
    assert saved, "no model was saved in any run"
    for path in saved:  # every published version loads and matches its content hash
        assert AnomalyModel.load(path).version == path.stem


@pytest.fixture
def infra(tmp_path):
    repo = InfraRepo.init_demo(tmp_path / "infra", {"web/terraform.tfvars": DEMO_TFVARS.read_text()})
    return repo


def commits_by_partition(repo: InfraRepo) -> list[str]:
    out = repo.git("log", "--format=%(trailers:key=NeuroPilot-Partition,valueonly)").stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def assert_consistent(repo: InfraRepo) -> None:
    """After recovery: no lock, no journal, the file equals HEAD and every commit's file parses."""
    tfvars = repo.path / "web" / "terraform.tfvars"
    assert not (repo.path / ".git" / "index.lock").exists()
    assert not repo.journal_path.exists()
    assert not repo.uncommitted([tfvars]), repo.git("diff").stdout
    read_tfvars(tfvars)
    for sha in repo.git("rev-list", "HEAD").stdout.split():
        parse_tfvars_text(repo.git("show", f"{sha}:web/terraform.tfvars").stdout)
    partitions = commits_by_partition(repo)
    assert len(partitions) == len(set(partitions)), f"a decision was committed twice: {partitions}"


def recover(repo: InfraRepo) -> str | None:
    with repo.locked():
        return repo.recover_interrupted_apply()


def test_kill_between_tfvars_write_and_commit_is_finished_by_the_next_run(infra):
    proc = start("apply-die-before-commit", infra.path, "7")
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    tfvars = infra.path / "web" / "terraform.tfvars"
    assert read_tfvars(tfvars)["cpu_scale_up_threshold"] == thresholds(7)["cpu_scale_up_threshold"]
    assert infra.uncommitted([tfvars]) and infra.journal_path.exists()
    # The human-override detector does not mistake NeuroPilot's own interrupted write for a human's edit.
    from neuropilot_pipeline.core.gitops import human_changes
    assert human_changes(infra, tfvars, ["cpu_scale_up_threshold", "min_instances"]) == []

    done = recover(infra)
    assert "completed the interrupted commit" in done
    assert_consistent(infra)
    message = infra.git("log", "-1", "--format=%B").stdout
    assert "ai-ops: generation 7" in message and "NeuroPilot-Partition: g7/web" in message
    assert "NeuroPilot-Recovered" in message
    # Re-running the same decision finds its commit instead of making a second one.
    subprocess.run([sys.executable, "-m", "neuropilot_pipeline_tests.reliability.crash_child", "apply-once",
                    str(infra.path), "7"], check=True, cwd=Path(__file__).resolve().parents[2])
    assert commits_by_partition(infra) == ["g7/web"]


def kill_apply_inside_git_hook(repo: InfraRepo, tmp_path: Path, hook_name: str, condition: str,
                               generation: int) -> None:
    """Run one apply and SIGKILL it (git included) while git runs `hook_name` (when `condition` holds)."""
    started = tmp_path / f"{hook_name}-started"
    hook = repo.path / ".git" / "hooks" / hook_name
    hook.write_text(f"#!/bin/sh\n{condition}\ntouch {started}\nsleep 30\n")
    hook.chmod(0o755)
    proc = start("apply-once", repo.path, str(generation))
    deadline = time.monotonic() + 30
    while not started.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    hook.unlink()


def test_kill_inside_git_commit_leaves_no_stale_lock_behind(infra, tmp_path):
    # A pre-commit hook that sleeps keeps git inside `commit`, holding .git/index.lock.
    # (git status also takes index.lock for a moment: the hook says when the commit itself runs.)
    kill_apply_inside_git_hook(infra, tmp_path, "pre-commit", "", generation=3)
    assert (infra.path / ".git" / "index.lock").exists()  # what a crash really leaves
    recover(infra)
    assert_consistent(infra)
    assert commits_by_partition(infra) == ["g3/web"]
    assert read_tfvars(infra.path / "web" / "terraform.tfvars")["min_instances"] == thresholds(3)["min_instances"]


def test_kill_after_git_moved_the_branch_but_before_it_updated_the_index(infra, tmp_path):
    # git commit moves the branch, then renames index.lock over the index. Killed in between, the
    # commit is made but the index still holds the old file, so `git status` calls it modified.
    # A reference-transaction hook runs exactly there ("committed": the ref is updated).
    kill_apply_inside_git_hook(infra, tmp_path, "reference-transaction", '[ "$1" = committed ] || exit 0', generation=5)
    assert commits_by_partition(infra) == ["g5/web"]  # the commit was made...
    assert (infra.path / ".git" / "index.lock").exists()
    assert infra.uncommitted([infra.path / "web" / "terraform.tfvars"])  # ...but git's index says otherwise

    done = recover(infra)
    assert "reset git's index" in done and "completed the interrupted commit" not in done
    assert_consistent(infra)
    assert commits_by_partition(infra) == ["g5/web"]
    assert read_tfvars(infra.path / "web" / "terraform.tfvars")["min_instances"] == thresholds(5)["min_instances"]


def test_random_kills_during_apply_loops_lose_nothing(infra):
    tfvars = infra.path / "web" / "terraform.tfvars"
    generation = 0
    for i in range(KILLS):
        kill_mid_run("apply", infra.path, str(generation), seed=300 + i)
        recover(infra)
        assert_consistent(infra)
        done = commits_by_partition(infra)
        if done:
            generation = int(done[0].split("/")[0][1:])
            # The newest commit is the file in force: nothing written was left uncommitted.
            expected = thresholds(generation)
            assert {k: read_tfvars(tfvars)[k] for k in expected} == expected
    assert len(commits_by_partition(infra)) >= 3, "too few applies completed for the test to mean anything"


def test_a_live_git_in_the_repository_is_waited_for_not_broken(infra):
    lock = infra.path / ".git" / "index.lock"
    hook = infra.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nsleep 30\n")
    hook.chmod(0o755)
    (infra.path / "README").write_text("a human's file\n")
    infra.git("add", "README")
    started = infra.path.parent / "human-hook-started"
    hook.write_text(f"#!/bin/sh\ntouch {started}\nsleep 30\n")
    human = subprocess.Popen(["git", "-C", str(infra.path), "commit", "-q", "-m", "human", "--", "README"],
                             start_new_session=True,
                             env={**os.environ, "GIT_AUTHOR_NAME": "A Human", "GIT_AUTHOR_EMAIL": "human@example.com",
                                  "GIT_COMMITTER_NAME": "A Human", "GIT_COMMITTER_EMAIL": "human@example.com"})
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert human.poll() is None and time.monotonic() < deadline, "the human's git commit did not start"
            time.sleep(0.02)
        from neuropilot_pipeline.core.gitops import RepoBusyError
        with pytest.raises(RepoBusyError, match="git is running"):
            recover(infra)
        assert lock.exists()  # a live git's lock is never removed
    finally:
        if human.poll() is None:
            os.killpg(human.pid, signal.SIGKILL)
        human.wait()


FLEET = ["svc0", "svc1", "svc2", "svc3", "svc4"]


@pytest.fixture
def fleet(tmp_path):
    return InfraRepo.init_demo(tmp_path / "infra", {f"{s}/terraform.tfvars": DEMO_TFVARS.read_text() for s in FLEET})


def fleet_values(repo: InfraRepo, service: str) -> dict:
    values = read_tfvars(repo.path / service / "terraform.tfvars")
    return {k: values[k] for k in thresholds(0)}


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_between_two_commits_of_a_batch_is_finished_by_recovery_and_the_next_apply(fleet, when):
    generation, k = 5, 2
    proc = start("apply-batch-die", fleet.path, str(generation), str(k), when)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert commits_by_partition(fleet) == ["g5/svc1", "g5/svc0"]
    assert fleet.journal_path.exists()
    written = fleet.path / FLEET[k] / "terraform.tfvars"
    assert bool(fleet.uncommitted([written])) == (when == "before")
    from neuropilot_pipeline.core.gitops import human_changes
    assert human_changes(fleet, written, list(thresholds(0))) == []

    done = recover(fleet)
    # The file written before the kill is committed, with its own message; the ones never
    # written are left for the re-run, not committed from the journal.
    finished = FLEET[:k + 1] if when == "before" else FLEET[:k]
    assert sorted(commits_by_partition(fleet)) == [f"g5/{s}" for s in finished]
    assert not fleet.journal_path.exists() and not fleet.uncommitted([fleet.path / s for s in FLEET])
    if when == "before":
        assert f"completed the interrupted commit of {FLEET[k]}/terraform.tfvars for g5/{FLEET[k]}" in done
        message = fleet.git("log", "-1", "--format=%B").stdout
        assert message.startswith(f"ai-ops: generation 5 {FLEET[k]}") and "NeuroPilot-Recovered" in message
        assert f"NeuroPilot-Partition: g5/{FLEET[k]}" in message
    for i, s in enumerate(FLEET):
        expected = thresholds(generation + i) if s in finished else {"cpu_scale_up_threshold": 80, "min_instances": 2}
        assert fleet_values(fleet, s) == expected, s
    before_rerun = {p: fleet.find_commit_for_partition(p) for p in commits_by_partition(fleet)}

    # The re-run of the window finishes the chain: each decision committed exactly once.
    proc = subprocess.run([sys.executable, "-m", "neuropilot_pipeline_tests.reliability.crash_child", "apply-batch-once",
                           str(fleet.path), str(generation)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    for s in FLEET:
        assert fleet_values(fleet, s) == thresholds(generation + FLEET.index(s))
    assert sorted(commits_by_partition(fleet)) == [f"g5/{s}" for s in FLEET]
    assert {p: fleet.find_commit_for_partition(p) for p in before_rerun} == before_rerun
    assert not fleet.journal_path.exists() and not fleet.uncommitted([fleet.path / s for s in FLEET])


def test_a_journal_left_by_the_one_file_version_is_still_recovered(infra):
    """A crash under the previous version left a journal describing one file, not a batch."""
    import hashlib
    import json

    from neuropilot_pipeline.core.gitops import commit_message
    from neuropilot_pipeline.core.tfvars import update_tfvars_text

    tfvars = infra.path / "web" / "terraform.tfvars"
    before, text = tfvars.read_bytes(), update_tfvars_text(tfvars.read_text(), thresholds(9))
    trailers = {"NeuroPilot-Run-Id": "run-9", "NeuroPilot-Partition": "g9/web"}
    infra.journal_path.parent.mkdir(parents=True, exist_ok=True)
    infra.journal_path.write_text(json.dumps({
        "file": "web/terraform.tfvars", "before": hashlib.sha256(before).hexdigest(),
        "after": hashlib.sha256(text.encode()).hexdigest(),
        "message": commit_message("ai-ops: generation 9", "crash test", trailers), "trailers": trailers}))
    tfvars.write_text(text)
    assert infra.is_our_pending_write(tfvars)
    assert recover(infra) == "completed the interrupted commit of web/terraform.tfvars for g9/web"
    assert_consistent(infra)
    assert commits_by_partition(infra) == ["g9/web"]
    assert "NeuroPilot-Recovered" in infra.git("log", "-1", "--format=%B").stdout
