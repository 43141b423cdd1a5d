"""The production stack the end-to-end test runs: a fresh PostgreSQL database, one faked wall clock
shared by every process (libfaketime), `dagster-webserver` and `dagster-daemon` as subprocesses on
the repository's dagster.yaml and workspace.yaml, and a GraphQL client.

Nothing here fakes Dagster or NeuroPilot: the only thing that is not real is the wall clock's date.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras
import yaml

REPO = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
UTC = dt.timezone.utc
LOCATION = {"repositoryLocationName": "neuropilot", "repositoryName": "__repository__"}
# Environment the stack must not inherit from whoever runs the tests.
FOREIGN_ENV = ("DAGSTER_", "NEUROPILOT_", "FAKETIME", "LD_PRELOAD", "SLACK_", "NOTION_", "PROMETHEUS_", "GRAFANA_")


class StackError(AssertionError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, predicate, timeout: float, interval: float = 1.0, on_timeout=lambda: ""):
    """Poll `predicate` until it returns something truthy; fail with `on_timeout()`'s details."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")
        time.sleep(interval)


# ---- PostgreSQL ------------------------------------------------------------------------------
class Database:
    """A database of the test's own on the local PostgreSQL server; dropped by `drop()`."""

    def __init__(self):
        self.name = f"neuropilot_e2e_{uuid.uuid4().hex[:12]}"

    @staticmethod
    def server_reachable() -> str | None:
        try:
            psycopg2.connect(dbname="postgres", connect_timeout=5, **PG).close()
            return None
        except psycopg2.OperationalError as exc:
            return str(exc).strip()

    @contextlib.contextmanager
    def _admin(self):
        conn = psycopg2.connect(dbname="postgres", **PG)
        conn.autocommit = True
        try:
            yield conn.cursor()
        finally:
            conn.close()

    def create(self) -> None:
        with self._admin() as cur:
            cur.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with self._admin() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def exists(self) -> bool:
        with self._admin() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,))
            return cur.fetchone() is not None

    def query(self, sql: str, params=()) -> list[dict]:
        conn = psycopg2.connect(dbname=self.name, **PG)
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                return [dict(r) for r in cur.fetchall()]
        finally:
            conn.close()


# ---- the faked wall clock --------------------------------------------------------------------
KEEPER = """
import os, signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print(os.environ.get("FAKETIME_SHARED", ""), flush=True)
signal.pause()
"""

CLOCK_PROBE = """
import datetime, json, threading, time
t0 = time.monotonic()
time.sleep(0.2)
threading.Event().wait(0.2)
print(json.dumps({"time": time.time(), "now": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  "waited": time.monotonic() - t0}))
"""


def engine_messages(db: Database, run_id: str) -> list[str]:
    """The messages of the run's events (Dagster's own are in the event, a step's log lines in user_message)."""
    out = []
    for r in db.query("SELECT event FROM event_logs WHERE run_id = %s ORDER BY id", (run_id,)):
        entry = json.loads(r["event"])
        out.append(((entry.get("dagster_event") or {}).get("message") or "") + (entry.get("user_message") or ""))
    return out


def worker_pid(db: Database, run_id: str) -> int | None:
    for message in engine_messages(db, run_id):
        # The run's executor runs its steps in the run worker's own process and says so.
        found = re.search(r"Executing steps in process \(pid: (\d+)\)", message)
        if found:
            return int(found.group(1))
    return None


def find_libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


class FakeClock:
    """One faked wall clock for every process of the stack.

    libfaketime reads the offset from real time out of one file (FAKETIME_TIMESTAMP_FILE, re-read
    every second), so the webserver, the daemon, its code servers, the run and step workers it
    launches (they inherit LD_PRELOAD) and the git commands they run all see the same time, and
    `set()` moves it for all of them at once. Only the wall clock is faked: the monotonic clock
    (timeouts, heartbeats, gRPC deadlines) stays real, and the clock runs at real speed — an
    accelerated clock would also shorten run monitoring's 180 s start timeout to a few seconds.
    """

    CACHE_SECONDS = 1

    def __init__(self, root: Path):
        self.lib = find_libfaketime()
        if self.lib is None:
            raise StackError("libfaketime is missing: apt-get install faketime (scripts/test.sh installs it)")
        if shutil.which("gcc") is None:
            raise StackError("gcc is missing (it builds clock_nanosleep_fix.c): apt-get install gcc libc6-dev")
        self.fix = root / "clock_nanosleep_fix.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(self.fix), str(Path(__file__).with_name("clock_nanosleep_fix.c")),
                        "-ldl"], check=True, capture_output=True, text=True)
        self.file = root / "faketime.rc"
        self.offset = 0
        self._write()
        # libfaketime gives each process tree a semaphore and shared memory in /dev/shm, left
        # behind by a process that is killed. One long-lived keeper owns them for the whole stack
        # (FAKETIME_SHARED) and removes them when it exits.
        self.keeper = subprocess.Popen([sys.executable, "-c", KEEPER], env={**os.environ, **self._env()},
                                       stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.shared = self.keeper.stdout.readline().strip()

    def _env(self) -> dict[str, str]:
        return {"LD_PRELOAD": f"{self.fix} {self.lib}", "FAKETIME_TIMESTAMP_FILE": str(self.file),
                "FAKETIME_CACHE_DURATION": str(self.CACHE_SECONDS), "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def env(self) -> dict[str, str]:
        env = self._env()
        if self.shared:
            env["FAKETIME_SHARED"] = self.shared
        return env

    def _write(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{self.offset:+d}\n")
        tmp.replace(self.file)

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + dt.timedelta(seconds=self.offset)

    def set(self, when: dt.datetime) -> None:
        """Every process sees `when` now (within a second), and the clock runs on from there."""
        self.offset = round(when.timestamp() - time.time())
        self._write()
        time.sleep(self.CACHE_SECONDS + 0.5)

    def next_minute_reads(self, target: dt.datetime) -> float:
        """Jump so that the next start of a minute on the stack's clock reads `target`.

        Dagster's scheduler sleeps (in real seconds) until the start of the next minute, so it
        wakes up exactly at `target`. Returns how many real seconds that is from now.
        """
        assert target.second == 0 and target.microsecond == 0
        now = self.now()
        boundary = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        if (boundary - now).total_seconds() < self.CACHE_SECONDS + 3:
            boundary += dt.timedelta(minutes=1)
        self.offset += round((target - boundary).total_seconds())
        self._write()
        return (boundary - now).total_seconds()

    def probe(self) -> dict:
        """What a Python process under this clock sees (and whether its sleeps and waits work)."""
        proc = subprocess.run([sys.executable, "-c", CLOCK_PROBE], env={**os.environ, **self.env()},
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise StackError(f"Python under libfaketime failed: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout)

    def close(self) -> None:
        if self.keeper.poll() is None:
            self.keeper.terminate()
            try:
                self.keeper.wait(10)
            except subprocess.TimeoutExpired:
                self.keeper.kill()
        for name in self.shared.split():  # in case the keeper could not clean up
            for path in (f"/dev/shm{name}", f"/dev/shm/sem.{name.lstrip('/')}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


# ---- Dagster -----------------------------------------------------------------------------------
class DagsterStack:
    """dagster-webserver and dagster-daemon on the repository's dagster.yaml, workspace.yaml and a
    fresh PostgreSQL database, under the faked clock, with a NeuroPilot home of their own."""

    def __init__(self, root: Path, db: Database, clock: FakeClock, extra_env: dict[str, str],
                 run_monitoring: dict[str, int] | None = None):
        self.root, self.db, self.clock = root, db, clock
        self.dagster_home = root / "dagster_home"
        self.dagster_home.mkdir()
        # The shipped file, unchanged: the test proves it works as it is. A test that needs run
        # monitoring's durations in seconds rather than hours may shorten them; nothing else.
        shutil.copyfile(REPO / "dagster.yaml", self.dagster_home / "dagster.yaml")
        if run_monitoring:
            instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
            unknown = set(run_monitoring) - set(instance["run_monitoring"])
            if unknown:
                raise StackError(f"the shipped dagster.yaml sets no run_monitoring.{sorted(unknown)} to shorten")
            instance["run_monitoring"].update(run_monitoring)
            (self.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(instance, sort_keys=False))
        self.logs = root / "logs"
        self.logs.mkdir()
        self.neuropilot_home = root / "neuropilot_home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.daemon: subprocess.Popen | None = None
        self.webserver: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
        env.update({
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_PG_HOST": PG["host"], "DAGSTER_PG_PORT": str(PG["port"]),
            "DAGSTER_PG_USERNAME": PG["user"], "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": self.db.name,
            "DAGSTER_WEBSERVER_URL": self.url,
            "NEUROPILOT_HOME": str(self.neuropilot_home),
            **self.extra_env, **self.clock.env(),
        })
        return env

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append((name, proc))
        return proc

    def start_webserver(self) -> None:
        self.webserver = self._start("webserver", ["dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
                                                   "-p", str(self.port)])

    def start_daemon(self) -> subprocess.Popen:
        n = sum(1 for name, _ in self.processes if name.startswith("daemon"))
        self.daemon = self._start(f"daemon{n + 1}", ["dagster._daemon", "run", "-w", "workspace.yaml"])
        return self.daemon

    def crash_daemon(self) -> None:
        """SIGKILL the daemon process alone, as the OOM killer would: no shutdown of any kind."""
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(10)

    def check_alive(self) -> None:
        for proc, name in ((self.webserver, "webserver"), (self.daemon, "daemon")):
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}\n{self.log_tails()}")

    def wait_until_serving(self, timeout: float = 180) -> None:
        def loaded():
            self.check_alive()
            try:
                data = self.gql("{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name } } } }")
            except (OSError, StackError):
                return False
            return data["repositoriesOrError"]["__typename"] == "RepositoryConnection" and \
                data["repositoriesOrError"]["nodes"]
        wait_for("the webserver to load the code location", loaded, timeout, on_timeout=self.log_tails)

    def gql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise StackError(f"GraphQL HTTP {err.code}: {err.read()[:2000]!r}") from None
        if body.get("errors"):
            raise StackError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tails(self, chars: int = 4000) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"----- {path.name} (last {chars} chars) -----\n{text[-chars:]}")
        return "\n".join(parts)

    def leftover_pids(self) -> list[int]:
        """Processes still running with this stack's DAGSTER_HOME in their environment (so: its own)."""
        marker = f"DAGSTER_HOME={self.dagster_home}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
        return pids

    def stop(self) -> list[int]:
        """Stop every process of the stack (SIGTERM, then SIGKILL); returns the pids that needed SIGKILL."""
        for _, proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.leftover_pids():
            time.sleep(0.5)
        killed = self.leftover_pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _, proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        return killed

