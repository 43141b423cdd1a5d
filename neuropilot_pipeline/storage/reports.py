"""Where daily reports and alert files are kept: a folder, or object storage.

Reports are rendered into a local folder (matplotlib and the HTML writer want paths); on
object storage each finished file is then uploaded whole, so a delivery retried by a run on
another machine finds the report, and a reader sees a whole file or none.
"""

from __future__ import annotations

from pathlib import Path

from .objects import ObjectFolder, ObjectStoreError, open_folder


class ReportStoreError(RuntimeError):
    pass


class ReportStore:
    def __init__(self, location: str | Path, local_dir: str | Path):
        self.folder = open_folder(location)
        self.remote = isinstance(self.folder, ObjectFolder)
        # Where files are rendered: the folder itself, or this machine's staging folder.
        self.local_dir = Path(local_dir) if self.remote else Path(location)

    def publish(self, *names: str) -> None:
        """Upload finished local files (names relative to local_dir); on disk they are in place."""
        if not self.remote:
            return
        for name in names:
            try:
                self.folder.write_bytes(self.folder.key(name), (self.local_dir / name).read_bytes())
            except ObjectStoreError as exc:
                raise ReportStoreError(str(exc)) from exc

    def display(self, name: str) -> str:
        return self.folder.display(self.folder.key(name))

    def exists(self, name: str) -> bool:
        return self.folder.exists(self.folder.key(name))

    def read_text(self, name: str) -> str:
        return self.folder.read_bytes(self.folder.key(name)).decode("utf-8")

    def names(self, prefix: str, suffix: str) -> list[str]:
        """Files directly in the folder named prefix*suffix, sorted."""
        return [p.name for p in self.folder.list(self.folder.key(), suffix) if p.name.startswith(prefix)]


def report_store(cfg) -> ReportStore:
    return ReportStore(cfg.reports_location, cfg.reports_dir)
