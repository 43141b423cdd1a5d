"""NeuroPilot homes for the tests that run the assets themselves."""

import shutil
from pathlib import Path

from neuropilot_pipeline.core.config import default_config_path
from neuropilot_pipeline.core.gitops import InfraRepo
from neuropilot_pipeline.core.yaml_edit import update_yaml_values


def apply_mode_home(path: Path, services: list[str]) -> Path:
    """A home in apply mode from the first day, on a tight budget (thresholds change and are
    committed), with one demo infrastructure repository of a tfvars per service. Returns the config."""
    path.mkdir(parents=True)
    config = path / "ops_config.yaml"
    shutil.copyfile(default_config_path(), config)
    update_yaml_values(config, {"mode": "apply", "policy": "learned", "cost_budget": 250.0,
                                "rollout.monitor_days": 0, "services": list(services)})
    tfvars = (default_config_path().parents[1] / "neuropilot_pipeline" / "data" / "demo_infra"
              / "terraform.tfvars").read_text()
    InfraRepo.init_demo(path / "infra", {f"{s}/terraform.tfvars": tfvars for s in services})
    return config
