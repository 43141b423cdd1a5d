import pytest
from ruamel.yaml import YAML

from neuropilot_pipeline.core.config import ConfigError, default_config_path, load_ops_config


def test_shipped_config_has_the_seed_defaults():
    cfg = load_ops_config(default_config_path(), env={})
    assert cfg.sla_target == 99.95
    assert cfg.cost_budget == 50.0
    assert cfg.anomaly_sensitivity == 0.92
    assert cfg.learning_rate == 0.05
    assert cfg.rate_limits["grafana_queries_per_hour"] == 100
    assert cfg.rate_limits["slack_notifications_per_hour"] == 10
    assert cfg.model.n_components == 3 and cfg.model.lookback_hours == 24
    assert cfg.threshold_values() == {
        "cpu_scale_up_threshold": 80, "cpu_scale_down_threshold": 30, "latency_threshold_ms": 250,
        "min_instances": 2, "max_instances": 200,
    }


def test_environment_overrides_nested_and_top_level_keys(tmp_path):
    env = {"NEUROPILOT_MODE": "apply", "NEUROPILOT_MODEL__N_COMPONENTS": "4", "NEUROPILOT_SLA_TARGET": "99.9",
           "NEUROPILOT_SERVICES": "[api, web]", "NEUROPILOT_SLACK_CHANNEL": "ignored", "NEUROPILOT_HOME": str(tmp_path)}
    cfg = load_ops_config(default_config_path(), env=env)
    assert cfg.mode == "apply" and cfg.model.n_components == 4 and cfg.sla_target == 99.9
    assert cfg.services == ("api", "web")
    assert cfg.home == tmp_path.resolve()
    assert cfg.tfvars_path("api") == tmp_path.resolve() / "infra" / "api" / "terraform.tfvars"


def write(tmp_path, text):
    """The shipped config with the keys in `text` replaced."""
    yaml = YAML(typ="safe")
    data = yaml.load(default_config_path().read_text())
    for key, value in yaml.load(text).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / "ops_config.yaml"
    with path.open("w") as fh:
        yaml.dump(data, fh)
    return path


@pytest.mark.parametrize("extra, message", [
    ("mode: yolo\n", "mode must be 'monitor' or 'apply'"),
    ("sla_target: 120\n", "sla_target = 120 is outside"),
    ("cost_budget: cheap\n", "cost_budget must be a number"),
    ("thresholds:\n  cpu_scale_up_threshold: {value: 99, min: 50, max: 95, max_step: 10}\n",
     "is outside its bounds"),
    ("source:\n  prometheus:\n    token: abc\n", "holds a secret"),
    ("anomaly_min_deviation:\n  error_rate: 0.5\n", "names error_rate, which is not a metric; the metrics are"),
    ("anomaly_min_deviation:\n  error_rate_percent: -1\n", "error_rate_percent = -1 is outside"),
    ("anomaly_min_deviation: 0.5\n", "anomaly_min_deviation must be a mapping of metric"),
])
def test_bad_config_names_the_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        load_ops_config(write(tmp_path, extra), env={})


def test_missing_or_broken_file_is_actionable(tmp_path):
    with pytest.raises(ConfigError, match="NEUROPILOT_CONFIG"):
        load_ops_config(tmp_path / "nope.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("sla_target: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_ops_config(bad, env={})


def test_reward_weights_are_validated_and_optional(tmp_path):
    assert load_ops_config(default_config_path(), env={}).reward_weights == {}
    cfg = load_ops_config(write(tmp_path, "reward:\n  weights: {sla: 0.5, cost: 0.5}\n"), env={})
    assert cfg.reward_weights == {"sla": 0.5, "cost": 0.5, "latency": 0.0, "availability": 0.0}
    with pytest.raises(ConfigError, match="reward.weights: .*sum to 1"):
        load_ops_config(write(tmp_path, "reward:\n  weights: {sla: 0.5, cost: 0.4}\n"), env={})


def test_a_url_as_a_folder_is_refused_not_turned_into_a_local_folder(tmp_path):
    from neuropilot_pipeline.core.config import ConfigError, load_ops_config

    cfg = load_ops_config(env={"NEUROPILOT_PATHS__WAREHOUSE": "s3://bucket/wh"}, home=tmp_path)
    assert cfg.warehouse_dir == "s3://bucket/wh"  # kept a URL, not a local folder named "s3:"
    assert cfg.local_state_dir == cfg.state_dir == tmp_path.resolve() / "state"
    with pytest.raises(ConfigError, match=r"paths.infra_repo = 's3://bucket/infra' is a URL; only paths.warehouse"):
        load_ops_config(env={"NEUROPILOT_PATHS__INFRA_REPO": "s3://bucket/infra"}, home=tmp_path)


def test_the_error_rate_has_a_smallest_material_change_unless_configured_otherwise(tmp_path):
    assert load_ops_config(default_config_path(), env={}).anomaly_min_deviation == {"error_rate_percent": 0.5}
    yaml = YAML(typ="safe")
    data = yaml.load(default_config_path().read_text())
    del data["anomaly_min_deviation"]  # a config written before the key existed gets the default
    with (tmp_path / "old.yaml").open("w") as fh:
        yaml.dump(data, fh)
    assert load_ops_config(tmp_path / "old.yaml", env={}).anomaly_min_deviation == {"error_rate_percent": 0.5}
    # ... also when the environment names another metric
    env = {"NEUROPILOT_ANOMALY_MIN_DEVIATION__CPU_PERCENT": "5"}
    assert load_ops_config(tmp_path / "old.yaml", env=env).anomaly_min_deviation == {
        "error_rate_percent": 0.5, "cpu_percent": 5.0}
    data["anomaly_min_deviation"] = {"error_rate_percent": 0}
    with (tmp_path / "off.yaml").open("w") as fh:
        yaml.dump(data, fh)
    assert load_ops_config(tmp_path / "off.yaml", env={}).anomaly_min_deviation == {"error_rate_percent": 0.0}
    cfg = load_ops_config(write(tmp_path, "anomaly_min_deviation:\n  cpu_percent: 5\n"), env={})
    assert cfg.anomaly_min_deviation == {"error_rate_percent": 0.5, "cpu_percent": 5.0}
