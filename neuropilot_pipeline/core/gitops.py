"""GitOps for the infrastructure repository: one commit per applied decision, never a force push.

Plain `git` through subprocess (no extra dependency): what a human would type, so every
action NeuroPilot takes can be read, reverted and audited with the usual tools.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from .atomic import LockTimeout, atomic_write_json, atomic_write_text, exclusive_lock

PARTITION_TRAILER = "NeuroPilot-Partition"
RUN_TRAILER = "NeuroPilot-Run-Id"


class GitOpsError(RuntimeError):
    pass


class ForeignChangesError(GitOpsError):
    pass


class PushRejectedError(GitOpsError):
    pass


class RepoBusyError(GitOpsError):
    pass


def commit_message(subject: str, body: str, trailers: Mapping[str, str]) -> str:
    return subject + "\n\n" + body.strip() + "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items()) + "\n"


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _git_running_in(repo: Path) -> list[int]:
    """PIDs of git processes working in `repo` (Linux /proc; empty elsewhere)."""
    pids, root = [], str(repo.resolve())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "comm").read_text().strip() != "git":
                continue
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            pids.append(int(proc.name))
    return pids


@dataclass
class InfraRepo:
    path: Path
    branch: str = "main"
    remote: str | None = None
    author_name: str = "NeuroPilot"
    author_email: str = "neuropilot@localhost"

    def __post_init__(self):
        self.path = Path(self.path)
        # ensure_repository's verdict, kept for this object's life (one run): it was called
        # before every git operation, three times per service and window.
        self._checked = False

    # ---- plumbing ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {**os.environ, "GIT_AUTHOR_NAME": self.author_name, "GIT_AUTHOR_EMAIL": self.author_email,
               "GIT_COMMITTER_NAME": self.author_name, "GIT_COMMITTER_EMAIL": self.author_email,
               "GIT_TERMINAL_PROMPT": "0"}
        # git's automatic gc (once ~6,700 loose objects pile up: 100 services commit that in
        # about 17 windows) runs inside the commit that triggers it, not detached in the
        # background: a background gc deleted object folders while the next window's stale-lock
        # sweep walked .git (a month's backfill failed on it), and it holds locks that the sweep
        # must refuse to touch. Added to any GIT_CONFIG_* settings the environment has.
        n = int(env.get("GIT_CONFIG_COUNT") or 0)
        env.update({"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": "gc.autoDetach",
                    f"GIT_CONFIG_VALUE_{n}": "false"})
        return env

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, env=self._env())
        if check and proc.returncode != 0:
            raise GitOpsError(f"git {' '.join(args)} failed in {self.path}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    @contextmanager
    def git_lines(self, *args: str) -> Iterator[Iterator[str]]:
        """The output of a git command line by line, as it comes; leaving the block early stops
        git. For history walks that can stop once they have found what they look for: NeuroPilot
        commits every window, so walking the whole history grows slower every day."""
        proc = subprocess.Popen(["git", "-C", str(self.path), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=self._env())
        try:
            yield (line.rstrip("\n") for line in proc.stdout)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()

    def clone_if_missing(self) -> bool:
        """A run on a fresh machine (a Kubernetes Job, a new container) has no clone yet: with
        gitops.remote set to the repository's address, make one. True when it cloned."""
        if (self.path / ".git").exists() or not self.remote:
            return False
        if self.path.exists() and any(self.path.iterdir()):
            raise GitOpsError(f"{self.path} is not empty and not a git repository; cannot clone {self.remote} into it.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        proc = subprocess.run(["git", "clone", "-q", "--branch", self.branch, self.remote, str(self.path)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise GitOpsError(
                f"{self.path} has no clone and cloning gitops.remote ({self.remote}) failed: {proc.stderr.strip()}. "
                "With no clone on this machine, gitops.remote must be the repository's address (a URL or path, not "
                "a remote's name), reachable with the credentials of the run's environment.")
        return True

    def ensure_repository(self) -> None:
        if self._checked and (self.path / ".git").exists():
            return
        if not (self.path / ".git").exists():
            raise GitOpsError(
                f"{self.path} is not a git repository. Set paths.infra_repo to your infrastructure repository "
                "(a clone), or use mode: monitor."
            )
        head = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.strip()
        if head != self.branch:
            raise GitOpsError(
                f"{self.path} has {head or 'a detached HEAD'} checked out, but gitops.branch is {self.branch!r}. "
                f"Check out {self.branch} there (git -C {self.path} switch {self.branch}) or change gitops.branch."
            )
        self._checked = True

    @classmethod
    def init_demo(cls, path: str | Path, files: Mapping[str, str], branch: str = "main") -> "InfraRepo":
        repo = cls(Path(path), branch)
        repo.path.mkdir(parents=True, exist_ok=True)
        repo.git("init", "-q", "-b", branch)
        for rel, text in files.items():
            atomic_write_text(repo.path / rel, text, mode=0o644)
        repo.git("add", "--", *files)
        # The starting commit is the humans' work, not NeuroPilot's.
        subprocess.run(["git", "-C", str(repo.path), "commit", "-q", "-m", "Initial infrastructure for the web service"],
                       check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "Platform Team", "GIT_AUTHOR_EMAIL": "platform@example.com",
                            "GIT_COMMITTER_NAME": "Platform Team", "GIT_COMMITTER_EMAIL": "platform@example.com"})
        return repo

    # ---- crash safety -----------------------------------------------------------------------
    @property
    def control_dir(self) -> Path:
        # Inside .git: never committed, never shown by `git status`, travels with the clone.
        return self.path / ".git" / "neuropilot"

    @property
    def journal_path(self) -> Path:
        return self.control_dir / "apply-journal.json"

    @contextmanager
    def locked(self, timeout_s: float = 300.0) -> Iterator[None]:
        """One NeuroPilot writer at a time per repository, across processes (CLI, daemon runs, backfills)."""
        self.ensure_repository()
        try:
            with exclusive_lock(self.control_dir / "lock", timeout_s, f"writing {self.path}"):
                self._clear_stale_git_locks()
                yield
        except LockTimeout as exc:
            raise RepoBusyError(str(exc)) from None

    def _clear_stale_git_locks(self) -> None:
        """A git killed mid-commit leaves its lock files behind (index.lock, HEAD.lock,
        refs/heads/<branch>.lock, ...) and every later git command fails. Under our lock, with
        no git process working in the repository, they are stale."""
        git_dir = self.path / ".git"
        locks = []
        # os.walk, not rglob: it skips a folder that vanishes while it walks (a person's `git gc`
        # in the clone deletes loose-object folders) instead of failing the run.
        for folder, subfolders, files in os.walk(git_dir):
            if Path(folder) == self.control_dir:
                subfolders.clear()
                continue
            locks += [Path(folder) / name for name in files if name.endswith(".lock")]
        if not locks:
            return
        busy = _git_running_in(self.path)
        if busy:
            raise RepoBusyError(f"git is running in {self.path} (pids {busy}) and holds "
                                f"{', '.join(str(p.relative_to(git_dir)) for p in locks)}; re-run when it is done.")
        for lock in locks:
            lock.unlink(missing_ok=True)

    # ---- checks -----------------------------------------------------------------------------
    def status(self, files: Iterable[str | Path]) -> dict[str, str]:
        """{repository-relative name: porcelain XY code} of `files` git reports: edited, staged,
        deleted, or untracked ("??"). Absent means committed as it is."""
        rels = [self._rel(f) for f in files]
        out = self.git("status", "--porcelain", "--untracked-files=all", "--", *rels).stdout
        return {line[3:]: line[:2] for line in out.splitlines() if line.strip()}

    def uncommitted(self, files: Iterable[str | Path]) -> list[str]:
        return [rel for rel, code in self.status(files).items() if code != "??"]

    def assert_no_foreign_changes(self, files: Sequence[str | Path]) -> None:
        """Refuse to touch files someone has edited without committing: their work comes first."""
        self.ensure_repository()
        self._refuse_foreign_changes(self.uncommitted(files))

    def _refuse_foreign_changes(self, dirty: Sequence[str]) -> None:
        if dirty:
            raise ForeignChangesError(
                f"{', '.join(dirty)} in {self.path} has uncommitted edits that NeuroPilot did not make. "
                "Commit or discard them (git -C <repo> diff shows what changed); NeuroPilot wrote nothing."
            )

    # ---- commits ----------------------------------------------------------------------------
    def find_commit_for_partition(self, partition: str) -> str | None:
        return self.find_commits_for_partitions([partition]).get(partition)

    def find_commits_for_partitions(self, partitions: Iterable[str]) -> dict[str, str]:
        """{partition: newest commit with its trailer} for those of `partitions` that have one.
        One `git log` for all of them: a re-run of a window finds 100 services' commits at once."""
        wanted = set(partitions)
        if not wanted:
            return {}
        # -F: a partition is a literal (service names may hold regex characters); the exact
        # trailer value is compared below, the grep only narrows what git prints.
        out = self.git("log", self.branch, "--format=%H%x1f%B%x1e", "-F",
                       *(f"--grep={PARTITION_TRAILER}: {p}" for p in sorted(wanted)), check=False).stdout
        found: dict[str, str] = {}
        for record in out.split("\x1e"):
            sha, _, message = record.strip().partition("\x1f")
            for line in message.splitlines():
                key, _, value = line.strip().partition(": ")
                if key == PARTITION_TRAILER and value.strip() in wanted:
                    found.setdefault(value.strip(), sha)  # git log is newest first
        return found

    def commit_decision(self, files: Sequence[str | Path], subject: str, body: str,
                        trailers: Mapping[str, str]) -> str | None:
        """Commit exactly `files`; None when they hold no change."""
        self.ensure_repository()
        rels = [self._rel(f) for f in files]
        self.git("add", "--", *rels)
        if not self.git("diff", "--cached", "--name-only", "--", *rels).stdout.strip():
            return None
        message = commit_message(subject, body, trailers)
        self.git("commit", "-q", "-m", message, "--", *rels)
        sha = self.git("rev-parse", "HEAD").stdout.strip()
        if self.remote:
            self.push()
        return sha

    def pending_apply(self) -> list[dict] | None:
        """The interrupted batch's entries (file, before, after, message, trailers), in order."""
        if not self.journal_path.exists():
            return None
        try:
            journal = json.loads(self.journal_path.read_text())
            # A journal left by a version that applied one file per journal is that file's entry.
            entries = journal["entries"] if "entries" in journal else [journal]
            for e in entries:
                e["file"], e["before"], e["after"], e["message"], e["trailers"].get  # noqa: B018 - shape check
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GitOpsError(
                f"the apply journal {self.journal_path} is unreadable ({exc}). Check `git -C {self.path} status`: "
                "commit or discard the tfvars change it describes, then delete the journal.") from exc
        return entries

    def is_our_pending_write(self, path: str | Path) -> bool:
        """True when `path` holds exactly what an interrupted NeuroPilot apply wrote (not a human's edit)."""
        try:
            entries = self.pending_apply() or []
        except GitOpsError:
            return False
        rel = self._rel(path)
        return any(e["file"] == rel and file_digest(self.path / rel) == e["after"] for e in entries)

    def recover_interrupted_apply(self) -> str | None:
        """Finish or discard an apply a crash interrupted. Call under `locked()`.

        The journal is written before any tfvars file and removed after the batch's last commit,
        and each file is committed right after it is written, so a crash leaves each entry in
        one of: the file unchanged (nothing to do), the file written but not committed (commit
        it now, with the original decision's message), or the commit made (nothing to do).
        Anything else means someone edited the file since: left for a human, and then nothing
        is committed, not even the other entries. Returns a description of what was done, or
        None when there was nothing to recover."""
        entries = self.pending_apply()
        if entries is None:
            return None
        status = self.status(e["file"] for e in entries) if entries else {}
        # A git killed after it moved the branch but before it renamed index.lock over the index
        # leaves the commit made and the index one step behind: status then calls the file
        # modified though it equals HEAD. Judge "committed" against HEAD, not the index.
        differs_from_head = self._differ_from_head(status) if status else set()
        pending, untouched, foreign, stale_index = [], [], [], []
        for e in entries:
            current = file_digest(self.path / e["file"])
            if current == e["after"] and e["file"] in status and (status[e["file"]] == "??"
                                                                   or e["file"] in differs_from_head):
                pending.append(e)
            elif current == e["after"] and e["file"] in status:
                stale_index.append(e["file"])
                untouched.append((e, True))
            elif current in (e["before"], e["after"]):
                untouched.append((e, current == e["after"]))
            else:
                foreign.append(e)
        if foreign:
            raise ForeignChangesError(
                f"{', '.join(e['file'] for e in foreign)} in {self.path} was changed after an interrupted NeuroPilot "
                f"apply ({', '.join(_partition(e) for e in foreign)}). "
                f"Commit or discard that change, then delete {self.journal_path}; NeuroPilot wrote nothing.")
        if stale_index:
            self.git("reset", "-q", "--", *stale_index)  # the index entry back to HEAD's, which holds our write
        untracked = [e["file"] for e in pending if status[e["file"]] == "??"]
        if untracked:
            self.git("add", "--", *untracked)
        for e in pending:
            self._commit_written_file(e["file"], e["message"] + "NeuroPilot-Recovered: commit completed after an "
                                      "interrupted run\n")
        if pending and self.remote:
            self.push()
        self.journal_path.unlink()
        done = [f"completed the interrupted commit of {e['file']} for {_partition(e)}" for e in pending]
        if stale_index:
            done.append(f"reset git's index for {', '.join(stale_index)} to HEAD: git was killed after committing "
                        "but before updating its index")
        if len(entries) == 1 and untouched:
            e, committed = untouched[0]
            done.append(f"nothing to recover for {e['file']} ({_partition(e)}): the change was "
                        f"{'committed' if committed else 'never written'}")
        elif untouched:
            committed = sum(c for _, c in untouched)
            done.append(f"nothing to recover for {'the other ' if pending else ''}{len(untouched)} files of the "
                        f"interrupted batch: {committed} committed, {len(untouched) - committed} never written "
                        "(a re-run of their window applies them)")
        return "; ".join(done) or "nothing to recover: the apply journal was empty"

    def apply_file_change(self, path: str | Path, new_text: str, subject: str, body: str,
                          trailers: Mapping[str, str]) -> str | None:
        """Write `new_text` to `path` and commit it, crash-safely. Call under `locked()`.
        Returns the commit (an earlier identical commit for the same partition when the
        file already holds `new_text`), or None when nothing changed."""
        return self.apply_file_changes([(path, new_text, subject, body, trailers)])[0]

    def apply_file_changes(self, changes: Sequence[tuple[str | Path, str, str, str, Mapping[str, str]]]
                           ) -> list[str | None]:
        """Write each (path, new_text, subject, body, trailers) and commit it, one commit per
        change, crash-safely. Call under `locked()`. Returns, in order, what `apply_file_change`
        returns for each.

        A window's decisions for many services are applied together so that the git processes
        around the commits (status, add, sha look-up, push) run once per batch, not once per
        service: a 100-service window otherwise spends seconds starting git. Each commit is
        still its own `git commit`, so the repository's hooks and signing apply to every one.
        A file with uncommitted edits refuses the whole batch before anything is written."""
        if not changes:
            return []
        self.ensure_repository()
        rels = [self._rel(path) for path, *_ in changes]
        if len(set(rels)) != len(rels):
            raise GitOpsError(f"one batch changes a file twice ({sorted({r for r in rels if rels.count(r) > 1})}); "
                              "each file takes one change per batch")
        status = self.status(rels)
        self._refuse_foreign_changes([rel for rel, code in status.items() if code != "??"])
        results: list[str | None] = [None] * len(changes)
        writes, unchanged = [], {}
        for i, ((_, new_text, subject, body, trailers), rel) in enumerate(zip(changes, rels)):
            path = self.path / rel
            data = new_text.encode("utf-8")
            if data == (path.read_bytes() if path.exists() else b""):
                if trailers.get(PARTITION_TRAILER):
                    unchanged[i] = trailers[PARTITION_TRAILER]
                continue
            writes.append((i, new_text, {
                "file": rel, "before": file_digest(path), "after": hashlib.sha256(data).hexdigest(),
                "message": commit_message(subject, body, trailers), "trailers": dict(trailers)}))
        if unchanged:
            earlier = self.find_commits_for_partitions(unchanged.values())
            for i, partition in unchanged.items():
                results[i] = earlier.get(partition)
        if not writes:
            return results
        atomic_write_json(self.journal_path, {"entries": [entry for _, _, entry in writes]})
        # `git commit -- <path>` only takes files git already tracks: new ones are written and
        # added first, all in one `git add`.
        new = {entry["file"] for _, _, entry in writes if status.get(entry["file"]) == "??"
               or not (self.path / entry["file"]).exists()}
        for _, new_text, entry in writes:
            if entry["file"] in new:
                atomic_write_text(self.path / entry["file"], new_text, mode=0o644)
        if new:
            self.git("add", "--", *sorted(new))
        for _, new_text, entry in writes:
            if entry["file"] not in new:
                atomic_write_text(self.path / entry["file"], new_text, mode=0o644)
            self._commit_written_file(entry["file"], entry["message"])
        shas = self.git("log", "--format=%H", "-n", str(len(writes)), "HEAD").stdout.split()[::-1]
        for (i, _, _), sha in zip(writes, shas):
            results[i] = sha
        if self.remote:
            self.push()
        self.journal_path.unlink()
        return results

    def _differ_from_head(self, files: Iterable[str]) -> set[str]:
        """Those of `files` whose working-tree content differs from HEAD's (all, before a first commit)."""
        if self.git("rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
            return set(files)
        return set(self.git("diff", "--no-renames", "--name-only", "HEAD", "--", *files).stdout.splitlines())

    def _commit_written_file(self, rel: str, message: str) -> None:
        self.git("commit", "-q", "-m", message, "--", rel)

    def sync_with_remote(self) -> str:
        """Bring the clone up to date with gitops.remote before NeuroPilot reads or writes tfvars.

        Runs on several machines each have a clone, and people push their own changes to the
        remote: a decision must start from everything pushed since, or its commit is rejected
        and a human's change goes unnoticed. Fast-forward only, never a merge commit or a rebase
        of anyone's work. Call it holding `locked()`. Returns what it did, for the metadata."""
        if not self.remote:
            return "no remote"
        self.ensure_repository()
        fetched = self.git("fetch", "-q", self.remote, self.branch, check=False)
        if fetched.returncode != 0:
            raise GitOpsError(f"could not fetch {self.branch} from {self.remote} into {self.path}: "
                              f"{fetched.stderr.strip()}. Check the remote's address and credentials; nothing was written.")
        head, theirs = (self.git("rev-parse", ref).stdout.strip() for ref in ("HEAD", "FETCH_HEAD"))
        if head == theirs:
            return "up to date"
        if self._is_ancestor(theirs, head):  # commits made while the remote was unreachable
            self.push()
            return f"pushed local commits {theirs[:12]}..{head[:12]} to {self.remote}"
        if not self._is_ancestor(head, theirs):
            raise PushRejectedError(
                f"{self.path} ({self.branch} at {head[:12]}) and {self.remote} ({theirs[:12]}) have diverged: this clone "
                f"has commits the remote lacks and the remote has commits it lacks. Reconcile them by hand "
                f"(git -C {self.path} pull --rebase {self.remote} {self.branch}, then push) and re-run; NeuroPilot "
                "never merges or force-pushes.")
        merged = self.git("merge", "--ff-only", "-q", theirs, check=False)
        if merged.returncode != 0:
            raise GitOpsError(f"could not fast-forward {self.path} to {self.remote}/{self.branch}: "
                              f"{(merged.stderr or merged.stdout).strip()}. Commit or discard the local edits it names.")
        return f"fast-forwarded {head[:12]}..{theirs[:12]} from {self.remote}"

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return self.git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def push(self) -> None:
        proc = self.git("push", self.remote, f"HEAD:{self.branch}", check=False)
        if proc.returncode != 0:
            raise PushRejectedError(
                f"push of {self.branch} to {self.remote} was rejected: {proc.stderr.strip()}. "
                "The remote has commits NeuroPilot has not seen: pull --rebase and re-run, or stop. "
                "NeuroPilot never force-pushes; the commit stays local."
            )

    def _rel(self, f: str | Path) -> str:
        p = Path(f)
        return str(p.resolve().relative_to(self.path.resolve())) if p.is_absolute() else str(p)


def _partition(entry: Mapping) -> str:
    return entry["trailers"].get(PARTITION_TRAILER, "")


def decision_commit_subject(old: Mapping[str, float], new: Mapping[str, float], reward: float, sla: float,
                            model_version: str) -> str:
    parts = []
    for name in new:
        a, b = old.get(name), new[name]
        if a is not None and a != b:
            verb = "raise" if b > a else "lower"
            parts.append(f"{verb} {name} {a:g}→{b:g}")
    what = ", ".join(parts) or "no change"
    return f"ai-ops: {what} (reward {reward:+.2f}, SLA {sla:.3f}%, model {str(model_version)[:8]})"


@dataclass
class HumanChange:
    var: str
    old: object  # the value NeuroPilot last committed
    new: object  # the value in the file now
    sha: str | None  # the commit that changed it, None for an uncommitted edit
    author: str


def _values_at(repo: InfraRepo, sha: str, rel: str) -> dict:
    from .tfvars import parse_tfvars_text

    text = repo.git("show", f"{sha}:{rel}").stdout
    return parse_tfvars_text(text, f"{rel}@{sha[:8]}")


def human_changes(repo: InfraRepo, path: str | Path, managed: Sequence[str]) -> list[HumanChange]:
    """Managed values that differ from what NeuroPilot last committed to `path`: changed by a
    later commit of someone else, or by an edit not yet committed. Before NeuroPilot's first
    commit there is nothing to compare with, so nothing counts as an override."""
    from .tfvars import read_tfvars

    repo.ensure_repository()
    if repo.is_our_pending_write(path):
        return []  # NeuroPilot's own write, interrupted before its commit: recovery commits it
    rel = repo._rel(path)
    ours = repo.git("log", "-1", "--format=%H", f"--author={repo.author_name}", "--", rel).stdout.strip()
    if not ours:
        return []
    committed = _values_at(repo, ours, rel)
    current = read_tfvars(path)
    later = repo.git("log", "--format=%H|%an", f"{ours}..HEAD", "--", rel).stdout.split()
    dirty = bool(repo.uncommitted([path]))
    changes = []
    for var in managed:
        if var in current and committed.get(var) != current[var]:
            sha, author = (None, "uncommitted edit")
            if not dirty and later:
                sha, author = later[0].split("|", 1)
            elif dirty and later and _values_at(repo, "HEAD", rel).get(var) != committed.get(var):
                sha, author = later[0].split("|", 1)
            changes.append(HumanChange(var, committed.get(var), current[var], sha, author))
    return changes


def newest_authors(repo: InfraRepo, rels: Sequence[str]) -> dict[str, str]:
    """{file: author of the newest commit that touched it} for the repository-relative `rels`
    that have one. Reads the history newest first and only as far back as the oldest of those
    newest commits (a window's worth of commits, not the thousands a month of windows makes)."""
    wanted, found, author = set(rels), {}, None
    with repo.git_lines("log", "--format=%x1e%an", "--name-only", "--", *rels) as lines:
        for line in lines:
            if line.startswith("\x1e"):
                author = line[1:]
            elif author is not None and line in wanted and line not in found:
                found[line] = author
                if len(found) == len(wanted):
                    break
    return found


def files_to_check_for_human_changes(repo: InfraRepo, paths: Sequence[str | Path]) -> set[str]:
    """Of `paths` (as repository-relative names), the ones `human_changes` could find something
    in: newest commit not NeuroPilot's, or edits not committed. Two git calls for all files, so
    a cycle over many services does not run four per service when nobody touched anything."""
    repo.ensure_repository()
    rels = [repo._rel(p) for p in paths]
    if not rels:
        return set()
    newest_author = newest_authors(repo, rels)
    dirty = set(repo.uncommitted(rels))
    return {rel for rel in rels if rel in dirty or newest_author.get(rel, repo.author_name) != repo.author_name}


def thresholds_at_partition(repo: InfraRepo, path: str | Path, partition: str) -> dict | None:
    """The file's values in the commit NeuroPilot made for `partition` (for rollback)."""
    sha = repo.find_commit_for_partition(partition)
    return None if sha is None else _values_at(repo, sha, repo._rel(path))


def list_decision_commits(repo: InfraRepo, path: str | Path) -> list[tuple[str, str, str]]:
    """(sha, partition trailer, subject) of NeuroPilot's commits to `path`, newest first."""
    out = repo.git("log", f"--author={repo.author_name}", f"--format=%H%x1f%(trailers:key={PARTITION_TRAILER},valueonly)%x1f%s%x1e",
                   "--", repo._rel(path)).stdout
    rows = []
    for rec in out.split("\x1e"):
        parts = rec.strip().split("\x1f")
        if len(parts) == 3:
            rows.append((parts[0], parts[1].strip(), parts[2]))
    return rows
