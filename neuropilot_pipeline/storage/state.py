"""Small state documents carried from one partition to the next (policy, detectors, simulator).

JSON for dicts, NPZ for dicts of numpy arrays (loaded with allow_pickle=False). Each state is
keyed by (kind, partition key) so re-materializing partition P always starts from the state
at the end of P-1, which makes backfills replay deterministically. The root is a folder or
an object-storage URL (objects.py): a state document is small and written whole either way.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..core.atomic import atomic_write_bytes, json_text
from .objects import ObjectFolder, ObjectStoreError, is_url

_SAFE = re.compile(r"[^0-9A-Za-z_.-]")


class StateFileError(ValueError):
    pass


class StateStore:
    def __init__(self, root: str | Path):
        self.store = ObjectFolder(str(root)) if is_url(root) else None
        self.root = self.store.key() if self.store else Path(root)

    def _path(self, kind: str, key: str, suffix: str) -> Path | PurePosixPath:
        return self.root / _SAFE.sub("", kind) / (_SAFE.sub("", key) + suffix)

    def _read_bytes(self, path) -> bytes | None:
        try:
            return self.store.read_bytes(path) if self.store else path.read_bytes()
        except FileNotFoundError:
            return None
        except ObjectStoreError as exc:
            raise StateFileError(str(exc)) from exc

    def _write_bytes(self, path, data: bytes) -> None:
        if self.store:
            try:
                self.store.write_bytes(path, data)
            except ObjectStoreError as exc:
                raise StateFileError(str(exc)) from exc
        else:
            atomic_write_bytes(path, data)

    def display(self, path) -> str:
        return self.store.display(path) if self.store else str(path)

    def read_json(self, kind: str, key: str) -> dict[str, Any] | None:
        path = self._path(kind, key, ".json")
        raw = self._read_bytes(path)
        if raw is None:
            return None
        path = self.display(path)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateFileError(
                f"{kind} state {path} is corrupt ({exc}). Delete it and re-materialize the partition "
                f"{key} (and the ones after it) to rebuild it."
            ) from exc
        if not isinstance(data, dict):
            raise StateFileError(f"{kind} state {path} must hold a JSON object; delete it and re-materialize {key}.")
        return data

    def write_json(self, kind: str, key: str, data: dict[str, Any]) -> Path | PurePosixPath:
        path = self._path(kind, key, ".json")
        self._write_bytes(path, json_text(data, compact=True).encode("utf-8"))
        return path

    def read_arrays(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(kind, key, ".npz")
        raw = self._read_bytes(path)
        if raw is None:
            return None
        path = self.display(path)
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise StateFileError(
                f"{kind} state {path} is corrupt ({exc}). Delete it and re-materialize partition {key}."
            ) from exc

    def write_arrays(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> Path | PurePosixPath:
        path = self._path(kind, key, ".npz")
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        self._write_bytes(path, buf.getvalue())
        return path
