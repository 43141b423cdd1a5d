"""Crash-safe file writes: a reader sees the old file or the new one, never half of either.

Every file NeuroPilot owns (Parquet partitions, model versions, registry, policy state,
tfvars, reports) is written through these helpers: the bytes go to a temporary file in
the same directory, are fsync'ed, then renamed over the target (rename is atomic on
POSIX within one file system), and the directory is fsync'ed so the rename survives a
power cut.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

DEFAULT_FILE_MODE = 0o640


class DiskFullError(OSError):
    """ENOSPC/EDQUOT while writing: the previous version of the file is intact."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike, mode: int = DEFAULT_FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.
    Use this for writers that want a path (pyarrow, numpy.savez) rather than bytes.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temps(target)
    # The writer's pid is in the name, so a later writer can tell an abandoned temp file
    # (its process is gone, e.g. killed mid-write) from one still being written.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, f"no space left on the device holding {target.parent} while writing "
                                f"{target.name}; the previous version is intact. Free space there (or move "
                                "NEUROPILOT_HOME to a larger volume) and re-run") from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes, mode: int = DEFAULT_FILE_MODE) -> None:
    with atomic_path(target, mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str, mode: int = DEFAULT_FILE_MODE) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), mode)


def atomic_write_json(target: str | os.PathLike, obj: Any, mode: int = DEFAULT_FILE_MODE, compact: bool = False) -> None:
    """Indented for people; `compact` for machine state (a policy state holds days of minutes:
    indented, every number is a line of its own and the file three times the size)."""
    atomic_write_text(target, json_text(obj, compact), mode)


def json_text(obj: Any, compact: bool = False) -> str:
    text = json.dumps(obj, sort_keys=True, default=_json_default, **({"separators": (",", ":")} if compact else {"indent": 2}))
    return text + "\n"


def atomic_write_with(target: str | os.PathLike, writer: Callable[[Path], None], mode: int = DEFAULT_FILE_MODE) -> None:
    """Call ``writer(tmp_path)`` and publish its output atomically at ``target``."""
    with atomic_path(target, mode) as tmp:
        writer(tmp)


ABANDONED_AFTER_S = 3600.0


def _is_abandoned(tmp: Path, now: float) -> bool:
    parts = tmp.name.rsplit(".", 3)  # .<target name>.<pid>.<random>.tmp
    try:
        pid = int(parts[1])
    except (IndexError, ValueError):
        pid = None
    if pid is not None and pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    try:
        return now - tmp.stat().st_mtime > ABANDONED_AFTER_S
    except FileNotFoundError:
        return False


def _remove_abandoned_temps(target: Path) -> None:
    now = time.time()
    for tmp in target.parent.glob(f".{target.name}.*.tmp"):
        if _is_abandoned(tmp, now):
            tmp.unlink(missing_ok=True)


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete temp files abandoned by writers that were killed mid-write (their process is
    gone, or they are over an hour old); files being written right now are left alone."""
    directory = Path(directory)
    if not directory.exists():
        return []
    removed, now = [], time.time()
    for tmp in directory.rglob(".*.tmp"):
        if _is_abandoned(tmp, now):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _json_default(value: Any) -> Any:
    # numpy scalars and timestamps show up in metadata dicts; store them as plain JSON.
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


class LockTimeout(RuntimeError):
    pass


@contextmanager
def exclusive_lock(path: str | os.PathLike, timeout_s: float, what: str) -> Iterator[None]:
    """An flock held across processes (CLI, daemon runs, backfills, sensors); released by the
    kernel if the holder dies, so a crash never leaves it stuck."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, DEFAULT_FILE_MODE), "r+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(f"another NeuroPilot process has held {path} ({what}) for {timeout_s:g} s; "
                                      "wait for it to finish (`fuser` on that file finds it) and re-run.") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
