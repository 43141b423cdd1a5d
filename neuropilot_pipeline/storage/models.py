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
        sql = f"SELECT * FROM {REGISTRY_TABLE}"
        df = self.warehouse.query(sql)
        if services:
            df = df[df["service"].isin(services)]
        return df.sort_values(["service", "partition"]).reset_index(drop=True)

    def version_for(self, service: str, day_partition: str) -> tuple[str, str] | None:
        """The model version in force on a day: the newest registered at or before that day."""
        reg = self.registry([service])
        reg = reg[reg["partition"] <= day_partition]
        if reg.empty:
            return None
        row = reg.iloc[-1]
        return str(row["version"]), str(row["partition"])
