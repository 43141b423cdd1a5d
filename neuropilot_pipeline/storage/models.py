"""Model versions on disk (JSON, content-addressed) and the registry table in the warehouse."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.gmm import AnomalyModel
from .warehouse import Warehouse

REGISTRY_TABLE = "model_registry"


class ModelStore:
    def __init__(self, root: str | Path, warehouse: Warehouse):
        self.root = Path(root)
        self.warehouse = warehouse

    def service_dir(self, service: str) -> Path:
        return self.root / service

    def save(self, service: str, model: AnomalyModel) -> Path:
        return model.save(self.service_dir(service))

    def load(self, service: str, version: str) -> AnomalyModel:
        return AnomalyModel.load(self.service_dir(service) / f"{version}.json")

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
