"""Model versions (JSON, content-addressed; a folder or object storage) and the registry table in the warehouse."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from ..core.gmm import AnomalyModel, ModelFileError
from .objects import ObjectStoreError, open_folder
from .warehouse import Warehouse

REGISTRY_TABLE = "model_registry"


class ModelStore:
    def __init__(self, root: str | Path, warehouse: Warehouse):
        self.folder = open_folder(root)
        self.root = self.folder.key()
        self.warehouse = warehouse

    def service_dir(self, service: str) -> Path | PurePosixPath:
        return self.root / service

    def save(self, service: str, model: AnomalyModel) -> str:
        key = self.service_dir(service) / f"{model.version}.json"
        try:
            if not self.folder.exists(key):  # content-addressed: an existing version is this very model
                self.folder.write_bytes(key, model.to_json().encode("utf-8"))
        except ObjectStoreError as exc:
            raise ModelFileError(f"could not save model {model.version} of {service}: {exc}") from exc
        return self.folder.display(key)

    def load(self, service: str, version: str) -> AnomalyModel:
        key = self.service_dir(service) / f"{version}.json"
        try:
            text = self.folder.read_bytes(key).decode("utf-8")
        except FileNotFoundError:
            raise ModelFileError(f"Model file {self.folder.display(key)} does not exist. Re-materialize anomaly_model "
                                 "for the day that trained it.") from None
        except ObjectStoreError as exc:
            raise ModelFileError(f"could not load model {version} of {service}: {exc}") from exc
        return AnomalyModel.from_json(text, source=self.folder.display(key))

    def registry(self, services: list[str] | None = None) -> pd.DataFrame:
        if not self.warehouse.partition_files(REGISTRY_TABLE):
            return pd.DataFrame(columns=["partition", "service", "version"])
        df = self.warehouse.read_table(REGISTRY_TABLE, services=services or None)
        return df.sort_values(["service", "partition"]).reset_index(drop=True)

    def versions_for(self, services: list[str], day_partition: str) -> dict[str, tuple[str, str]]:
        """Per service, the model version in force on a day: the newest registered at or before
        that day, as (version, partition). Services with no model yet are absent. One read."""
        reg = self.registry(services)
        reg = reg[reg["partition"] <= day_partition]
        newest = reg.groupby("service", sort=False).tail(1)
        return {str(r.service): (str(r.version), str(r.partition)) for r in newest.itertuples(index=False)}
