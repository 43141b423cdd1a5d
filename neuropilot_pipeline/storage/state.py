"""Small state documents carried from one partition to the next (policy, detectors, simulator).

JSON for dicts, NPZ for dicts of numpy arrays (loaded with allow_pickle=False). Each state is
keyed by (kind, partition key) so re-materializing partition P always starts from the state
at the end of P-1, which makes backfills replay deterministically.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import atomic_write_bytes, atomic_write_json

_SAFE = re.compile(r"[^0-9A-Za-z_.-]")


class StateFileError(ValueError):
    pass


class StateStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / _SAFE.sub("", kind) / (_SAFE.sub("", key) + suffix)

    def read_json(self, kind: str, key: str) -> dict[str, Any] | None:
        path = self._path(kind, key, ".json")
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateFileError(
                f"{kind} state {path} is corrupt ({exc}). Delete it and re-materialize the partition "
                f"{key} (and the ones after it) to rebuild it."
            ) from exc
        if not isinstance(data, dict):
            raise StateFileError(f"{kind} state {path} must hold a JSON object; delete it and re-materialize {key}.")
        return data

    def write_json(self, kind: str, key: str, data: dict[str, Any]) -> Path:
        path = self._path(kind, key, ".json")
        atomic_write_json(path, data, compact=True)
        return path

    def read_arrays(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(kind, key, ".npz")
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise StateFileError(
                f"{kind} state {path} is corrupt ({exc}). Delete it and re-materialize partition {key}."
            ) from exc

    def write_arrays(self, kind: str, key: str, arrays: dict[str, np.ndarray]) -> Path:
        path = self._path(kind, key, ".npz")
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return path
