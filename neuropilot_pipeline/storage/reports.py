"""Where daily reports and alert files are kept: a folder, or object storage.

Reports are rendered into a local folder (matplotlib and the HTML writer want paths); on
object storage each finished file is then uploaded whole, so a delivery retried by a run on
another machine finds the report, and a reader sees a whole file or none.
"""

from __future__ import annotations

from pathlib import Path

from .objects import ObjectFolder, ObjectStoreError, is_url


class ReportStoreError(RuntimeError):
    pass


class ReportStore:
    def __init__(self, location: str | Path, local_dir: str | Path):
        self.store = ObjectFolder(str(location)) if is_url(location) else None
        # Where files are rendered: the folder itself, or this machine's staging folder.
        self.local_dir = Path(local_dir) if self.store else Path(location)

    def publish(self, *names: str) -> None:
        """Upload finished local files (names relative to local_dir); nothing to do on disk."""
        if not self.store:
            return
        for name in names:
            try:
                self.store.write_bytes(self.store.key(name), (self.local_dir / name).read_bytes())
            except ObjectStoreError as exc:
                raise ReportStoreError(str(exc)) from exc

    def display(self, name: str) -> str:
        return self.store.display(self.store.key(name)) if self.store else str(self.local_dir / name)

    def exists(self, name: str) -> bool:
        return self.store.exists(self.store.key(name)) if self.store else (self.local_dir / name).exists()

    def read_text(self, name: str) -> str:
        if not self.store:
            return (self.local_dir / name).read_text(encoding="utf-8")
        return self.store.read_bytes(self.store.key(name)).decode("utf-8")

    def names(self, prefix: str, suffix: str) -> list[str]:
        """Files directly in the folder named prefix*suffix, sorted."""
        if self.store:
            found = [p.name for p in self.store.list(self.store.key(), suffix)]
        else:
            found = [p.name for p in self.local_dir.glob(f"*{suffix}")] if self.local_dir.exists() else []
        return sorted(n for n in found if n.startswith(prefix) and n.endswith(suffix))


def report_store(cfg) -> ReportStore:
    return ReportStore(cfg.reports_location, cfg.reports_dir)
