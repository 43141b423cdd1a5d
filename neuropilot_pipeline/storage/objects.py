"""Folders on object storage (s3://, gs://) through pyarrow's file systems.

The warehouse, the model versions and the chained state can live in a bucket, so runs on
different machines (Kubernetes Jobs, Docker containers) share them. On disk NeuroPilot
publishes a file by renaming a finished temporary file over it; object stores have no
rename, but they publish an object only when its upload completes, so writing the whole
content in one upload gives the same guarantee: a reader sees the old version or the new
one, never part of either, and a failed upload leaves the old version in place.

Credentials come only from the environment, through the store's own SDK chain
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, an instance or pod role,
`GOOGLE_APPLICATION_CREDENTIALS`); a URL that carries a secret is refused. The endpoint of an
S3-compatible server (MinIO, Ceph, R2) is `AWS_ENDPOINT_URL` or the URL's own
`?endpoint_override=host:port&scheme=http`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Sequence
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.atomic import atomic_write_bytes

SCHEMES = ("s3", "gs", "gcs")
# Query parameters of a pyarrow file-system URL that are secrets: they belong in the environment.
SECRET_PARAMS = {"access_key", "secret_key", "session_token", "credentials", "access_token"}
# Concurrent GETs when a read spans many partitions: object stores answer each in tens of ms.
READ_THREADS = 16
# What an s3:// URL may say after "?" (pyarrow S3FileSystem options); credentials may not.
S3_URL_OPTIONS = {"region", "endpoint_override", "scheme", "role_arn", "session_name", "external_id"}


class ObjectStoreError(OSError):
    """The bucket could not be reached, read or written; the message says what to check."""


def is_url(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def check_url(url: str) -> None:
    """Refuse what pyarrow would misread, before anything is written: unknown schemes,
    a missing bucket, credentials in the URL."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r}: only {', '.join(s + '://' for s in SCHEMES)} URLs are supported for object storage.")
    if not parts.netloc:
        raise ValueError(f"{url!r} names no bucket; write {parts.scheme}://BUCKET/PREFIX.")
    if parts.username or parts.password:
        raise ValueError(f"{parts.scheme}://{parts.hostname}/…: credentials must not be in the URL; set them in the "
                         "environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a role).")
    query = {k for k, _ in parse_qsl(parts.query)}
    secret = sorted(SECRET_PARAMS & query)
    if secret:
        raise ValueError(f"{parts.scheme}://{parts.netloc}{parts.path}: {', '.join(secret)} must not be in the URL; "
                         "set credentials in the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a role).")
    unknown = sorted(query - S3_URL_OPTIONS) if parts.scheme == "s3" else []
    if unknown:
        raise ValueError(f"{parts.scheme}://{parts.netloc}{parts.path}: unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(S3_URL_OPTIONS))}.")


def _s3_file_system(url: str) -> pafs.S3FileSystem:
    """An S3 file system for the URL's options and the environment's endpoint.

    allow_delayed_open: a small object is then uploaded with one PutObject instead of a
    three-request multipart upload (atomic either way), and a failure surfaces on close, which
    write_bytes reports like any other."""
    query = dict(parse_qsl(urlsplit(url).query))
    options = {k: query[k] for k in S3_URL_OPTIONS & set(query)}
    # pyarrow reads AWS_ENDPOINT_URL itself only in recent releases; the URL's own endpoint wins.
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_override" not in options:
        ep = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        options.update(endpoint_override=ep.netloc, scheme=options.get("scheme", ep.scheme))
    return pafs.S3FileSystem(**options, allow_delayed_open=True)


class ObjectFolder:
    """One folder (a bucket and a key prefix) of an object store."""

    def __init__(self, url: str):
        check_url(url)
        parts = urlsplit(url)
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")  # for display: no query
        try:
            if parts.scheme == "s3":
                self.fs, base = _s3_file_system(url), parts.netloc + parts.path
            else:
                self.fs, base = pafs.FileSystem.from_uri(url)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ObjectStoreError(f"cannot open {self.url}: {exc}") from exc
        self.base = PurePosixPath(base.rstrip("/"))
        self.scheme = parts.scheme

    def __repr__(self) -> str:
        return f"ObjectFolder({self.url!r})"

    # ---- names ------------------------------------------------------------------------
    def key(self, *parts: str) -> PurePosixPath:
        """A path inside this folder, as the file system names it ("bucket/prefix/a/b")."""
        return self.base.joinpath(*parts)

    def display(self, key: str | PurePosixPath) -> str:
        return f"{self.scheme}://{key}"

    # ---- objects ----------------------------------------------------------------------
    def exists(self, key: str | PurePosixPath) -> bool:
        return self._call("look up", key, lambda: self.fs.get_file_info(str(key)).type == pafs.FileType.File)

    def read_bytes(self, key: str | PurePosixPath) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""
        def read() -> bytes:
            with self.fs.open_input_stream(str(key)) as fh:
                return fh.read()
        return self._call("read", key, read)

    def write_bytes(self, key: str | PurePosixPath, data: bytes) -> None:
        """Publish the whole content in one upload (see the module's docstring)."""
        def write() -> None:
            with self.fs.open_output_stream(str(key)) as fh:
                fh.write(data)
        self._call("write", key, write)

    def delete(self, key: str | PurePosixPath) -> None:
        try:
            self._call("delete", key, lambda: self.fs.delete_file(str(key)))
        except FileNotFoundError:
            pass

    def list(self, directory: str | PurePosixPath, suffix: str = "") -> list[PurePosixPath]:
        """The objects directly inside `directory` whose names end with `suffix`, sorted."""
        selector = pafs.FileSelector(str(directory), allow_not_found=True, recursive=False)
        infos = self._call("list", directory, lambda: self.fs.get_file_info(selector))
        return sorted(PurePosixPath(i.path) for i in infos
                      if i.type == pafs.FileType.File and i.base_name.endswith(suffix))

    def subfolders(self, directory: str | PurePosixPath) -> list[str]:
        selector = pafs.FileSelector(str(directory), allow_not_found=True, recursive=False)
        infos = self._call("list", directory, lambda: self.fs.get_file_info(selector))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def read_parquet(self, keys: Sequence[PurePosixPath]) -> pa.Table:
        """Several Parquet objects as one table, columns matched by name (a column missing from
        an older partition is null there, as DuckDB's union_by_name does on disk)."""
        def one(key: PurePosixPath) -> pa.Table:
            # The whole object in one GET, then parsed: a ranged read of footer and columns
            # costs five requests for a partition of a few hundred kB.
            data = self.read_bytes(key)
            try:
                return pq.read_table(pa.BufferReader(data))
            except pa.ArrowException as exc:
                raise ObjectStoreError(f"{self.display(key)} is not a readable Parquet file ({exc}); delete it and "
                                       "re-materialize that partition (the others are unaffected).") from exc
        if len(keys) == 1:
            return one(keys[0])
        with ThreadPoolExecutor(min(READ_THREADS, len(keys))) as pool:
            tables = list(pool.map(one, keys))
        return pa.concat_tables(tables, promote_options="default")

    def _call(self, what: str, key, fn):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            if "NoSuchKey" in str(exc) or "Path does not exist" in str(exc):
                raise FileNotFoundError(self.display(key)) from exc
            raise ObjectStoreError(
                f"could not {what} {self.display(key)}: {exc}. Check that the bucket exists and that the "
                "credentials in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the role) may "
                f"{'write to' if what in ('write', 'delete') else 'read'} it"
                + ("; its previous version, if any, is unchanged." if what == "write" else ".")) from exc


class LocalFolder:
    """A folder on disk with ObjectFolder's interface, so the stores need no branch per backend.
    Writes go through core.atomic (temp file, fsync, rename); a missing file is FileNotFoundError."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalFolder({str(self.root)!r})"

    def key(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def display(self, key: str | os.PathLike) -> str:
        return str(key)

    def exists(self, key: str | os.PathLike) -> bool:
        return Path(key).is_file()

    def read_bytes(self, key: str | os.PathLike) -> bytes:
        return Path(key).read_bytes()

    def write_bytes(self, key: str | os.PathLike, data: bytes) -> None:
        atomic_write_bytes(key, data)

    def delete(self, key: str | os.PathLike) -> None:
        Path(key).unlink(missing_ok=True)

    def list(self, directory: str | os.PathLike, suffix: str = "") -> list[Path]:
        directory = Path(directory)
        return sorted(directory.glob(f"*{suffix}")) if directory.is_dir() else []

    def subfolders(self, directory: str | os.PathLike) -> list[str]:
        directory = Path(directory)
        return sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []


def open_folder(location: str | os.PathLike) -> "LocalFolder | ObjectFolder":
    """A folder or an object-storage URL, behind one interface."""
    return ObjectFolder(str(location)) if is_url(location) else LocalFolder(location)
