"""Small state documents carried from one partition to the next (policy, detectors, simulator).

JSON for dicts, NPZ for dicts of numpy arrays (loaded with allow_pickle=False), and bundles:
one NPZ per (kind, partition key) holding every service's document (JSON, its arrays beside it). Each state is
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

    # Bundles: one document per service for a (kind, partition key), all services in one file.
    # A state written per service per window cost every window one create, two fsyncs and a
    # rename per service (about 5 ms each on ext4: 0.6 s a window at 100 services, 75 s of a
    # month's backfill, for three kinds). Arrays inside the documents (a policy's demand history)
    # are stored as arrays, not as JSON numbers, which cost more to write than the files did.

    def read_services(self, kind: str, key: str, services: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """{service: document} for (kind, key). A service missing from the bundle (or a bundle
        that does not exist) is looked for in the per-service files written before bundles
        (`<kind>-<service>/<key>.json`), so an upgrade carries on from the state it finds."""
        path = self._path(kind, key, ".npz")
        raw = self._read_bytes(path)
        found = {} if raw is None else _decode_bundle(raw, kind, key, self.display(path))
        for service in services or ():
            if service not in found:
                legacy = self.read_json(f"{kind}-{service}", key)
                if legacy is not None:
                    found[service] = legacy
        return found

    def write_services(self, kind: str, key: str, documents: dict[str, dict[str, Any]]) -> Path | PurePosixPath:
        """Write these services' documents for (kind, key), keeping the other services' entries
        (a run for some services rewrites only theirs). One file, replaced atomically."""
        path = self._path(kind, key, ".npz")
        raw = self._read_bytes(path)
        merged = {} if raw is None else _decode_bundle(raw, kind, key, self.display(path))
        merged.update(documents)
        self._write_bytes(path, _encode_bundle(merged))
        return path


_ARRAY_REF = "__array__"


def _encode_bundle(documents: dict[str, dict[str, Any]]) -> bytes:
    arrays: dict[str, np.ndarray] = {}

    def lift(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "fiub":
                raise TypeError(f"state arrays must be numeric, not {value.dtype}")
            name = f"a{len(arrays)}"
            arrays[name] = value
            return {_ARRAY_REF: name}
        if isinstance(value, dict):
            return {k: lift(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [lift(v) for v in value]
        return value

    text = json_text({service: lift(doc) for service, doc in sorted(documents.items())}, compact=True)
    buf = io.BytesIO()
    # The JSON as UTF-8 bytes (a numpy string would be four bytes a character); uncompressed:
    # zlib cost more time than the bytes it saved were worth.
    np.savez(buf, documents=np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **arrays)
    return buf.getvalue()


def _decode_bundle(raw: bytes, kind: str, key: str, where: str) -> dict[str, dict[str, Any]]:
    fix = f"Delete it and re-materialize partition {key} (and the ones after it) to rebuild it."
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        documents = json.loads(arrays.pop("documents").tobytes().decode("utf-8"))
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise StateFileError(f"{kind} state {where} is corrupt ({exc}). {fix}") from exc

    def lower(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {_ARRAY_REF}:
                if value[_ARRAY_REF] not in arrays:
                    raise StateFileError(f"{kind} state {where} names an array it does not hold. {fix}")
                return arrays[value[_ARRAY_REF]]
            return {k: lower(v) for k, v in value.items()}
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    if not isinstance(documents, dict) or not all(isinstance(d, dict) for d in documents.values()):
        raise StateFileError(f"{kind} state {where} must hold one JSON object per service. {fix}")
    return {service: lower(doc) for service, doc in documents.items()}
