"""The resources every asset shares: settings, warehouse, model and state stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import dagster as dg

from ..core.config import OpsConfig, load_ops_config
from ..storage.models import ModelStore
from ..storage.state import StateStore
from ..storage.warehouse import Warehouse, WarehouseMissingError


class NeuroPilotResource(dg.ConfigurableResource):
    """Where NeuroPilot keeps its files and which ops_config.yaml it follows.

    Both default to the environment (NEUROPILOT_CONFIG, NEUROPILOT_HOME) at run time, so
    the same code location runs the demo, the tests and production.
    """

    config_path: Optional[str] = None
    home: Optional[str] = None

    def cfg(self) -> OpsConfig:
        return load_ops_config(self.config_path, home=self.home)

    def warehouse(self, cfg: OpsConfig | None = None) -> Warehouse:
        cfg = cfg or self.cfg()
        # The state folder remembers that the warehouse was created: if it vanishes later
        # (unmounted volume, wrong path), runs stop instead of starting over without history.
        state = StateStore(cfg.state_dir)
        created = state.read_json("warehouse", "created")
        try:
            wh = Warehouse(cfg.warehouse_dir, expect_existing=created is not None)
        except WarehouseMissingError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None  # a retry cannot bring a volume back
        if created is None:
            wh.ensure_created()
            state.write_json("warehouse", "created", {"root": str(cfg.warehouse_dir)})
        return wh

    def models(self, cfg: OpsConfig | None = None) -> ModelStore:
        cfg = cfg or self.cfg()
        return ModelStore(cfg.models_dir, Warehouse(cfg.warehouse_dir))

    def state(self, cfg: OpsConfig | None = None) -> StateStore:
        return StateStore((cfg or self.cfg()).state_dir)


def home_from_env() -> Path:
    return Path(os.environ.get("NEUROPILOT_HOME") or Path.cwd() / "neuropilot_home").resolve()
