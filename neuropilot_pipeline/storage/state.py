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

from ..core.atomic import json_text
from .objects import ObjectStoreError, open_folder

_SAFE = re.compile(r"[^0-9A-Za-z_.-]")


class StateFileError(ValueError):
    pass


class StateStore:
    def __init__(self, root: str | Path):
        self.folder = open_folder(root)
        self.root = self.folder.key()

    def _path(self, kind: str, key: str, suffix: str) -> Path | PurePosixPath:
        return self.root / _SAFE.sub("", kind) / (_SAFE.sub("", key) + suffix)

    def _read_bytes(self, path) -> bytes | None:
        try:
            return self.folder.read_bytes(path)
        except FileNotFoundError:
            return None
        except ObjectStoreError as exc:
            raise StateFileError(str(exc)) from exc

    def _write_bytes(self, path, data: bytes) -> None:
        try:
            self.folder.write_bytes(path, data)
        except ObjectStoreError as exc:
            raise StateFileError(str(exc)) from exc

    def display(self, path) -> str:
        return self.folder.display(path)

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
