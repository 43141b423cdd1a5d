"""ops_config.yaml: loading, environment overrides and validation.

The YAML file is the documented, commented source of settings; the environment overrides
any key (NEUROPILOT_<KEY>, NEUROPILOT_<SECTION>__<KEY>); secrets are never read from YAML.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

MANAGED_THRESHOLDS = (
    "cpu_scale_up_threshold",
    "cpu_scale_down_threshold",
    "latency_threshold_ms",
    "min_instances",
    "max_instances",
)
INTEGER_THRESHOLDS = {"min_instances", "max_instances"}
ENV_PREFIX = "NEUROPILOT_"
# Environment variables that are NeuroPilot's own switches rather than config keys.
RESERVED_ENV = {"NEUROPILOT_CONFIG", "NEUROPILOT_HOME"}
# Keys that must never come from the YAML file: they are secrets.
SECRET_KEYS = {"api_key", "token", "password", "webhook_url", "bearer_token", "secret"}

POLICIES = ("learned", "rule", "fixed")
# The folders that may be object-storage URLs (s3://, gs://): what runs on other machines must share.
OBJECT_STORAGE_PATHS = ("warehouse", "models", "state", "reports")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """ops_config.yaml (or an override) is invalid; the message says which key and how to fix it."""


@dataclass(frozen=True)
class ThresholdSpec:
    name: str
    value: float
    min: float
    max: float
    max_step: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "min": self.min, "max": self.max, "max_step": self.max_step}


@dataclass(frozen=True)
class ModelSettings:
    n_components: int = 3
    min_components: int = 1
    max_components: int = 6
    lookback_hours: int = 24
    min_samples: int = 48
    max_iter: int = 200
    drift_threshold: float = 6.0


@dataclass(frozen=True)
class OpsConfig:
    sla_target: float
    slo_p95_ms: float
    cost_budget: float
    anomaly_sensitivity: float
    learning_rate: float
    mode: str
    policy: str
    services: tuple[str, ...]
    partitions_start: str
    home: Path
    paths: dict[str, str]
    source: dict[str, Any]
    model: ModelSettings
    rate_limits: dict[str, int]
    thresholds: dict[str, ThresholdSpec]
    monitor_days: int = 7
    human_hold_hours: float = 24.0
    gitops: dict[str, Any] = field(default_factory=dict)
    reward_weights: dict[str, float] = field(default_factory=dict)
    # The smallest change from its baseline, per metric and in its unit, worth an anomaly.
    anomaly_min_deviation: dict[str, float] = field(default_factory=dict)
    config_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- paths -------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        p = Path(self.paths[name])
        return p if p.is_absolute() else self.home / p

    def location(self, name: str) -> Path | str:
        """A folder that may also be on object storage: the URL as written, else a local path."""
        return self.paths[name] if "://" in self.paths[name] else self.path(name)

    def _on_this_machine(self, name: str) -> Path:
        """paths.<name> when it is a folder, else <home>/<name> on this machine's disk."""
        return self.home / name if "://" in self.paths[name] else self.path(name)

    @property
    def warehouse_dir(self) -> Path | str:
        return self.location("warehouse")

    @property
    def models_dir(self) -> Path | str:
        return self.location("models")

    @property
    def reports_dir(self) -> Path:
        """Where reports are rendered: paths.reports, or this machine's staging folder when
        paths.reports is object storage (storage/reports.py uploads from there)."""
        return self._on_this_machine("reports")

    @property
    def reports_location(self) -> Path | str:
        return self.location("reports")

    @property
    def state_dir(self) -> Path | str:
        """The chained state documents (policy, detectors, simulator, delivery records)."""
        return self.location("state")

    @property
    def local_state_dir(self) -> Path:
        """Rate-limit ledgers and locks, which need a file lock: paths.state when it is a folder,
        else <home>/state on this machine's disk."""
        return self._on_this_machine("state")

    @property
    def infra_repo(self) -> Path:
        return self.path("infra_repo")

    def infra(self):
        """The infrastructure repository as configured (branch, optional remote to push to)."""
        from .gitops import InfraRepo

        return InfraRepo(self.infra_repo, branch=self.gitops.get("branch", "main"), remote=self.gitops.get("remote") or None)

    def tfvars_path(self, service: str) -> Path:
        return self.infra_repo / self.paths["tfvars"].format(service=service)

    def threshold_values(self) -> dict[str, float]:
        return {name: spec.value for name, spec in self.thresholds.items()}


def default_config_path() -> Path:
    return PROJECT_ROOT / "config" / "ops_config.yaml"


def default_home() -> Path:
    return Path(os.environ.get("NEUROPILOT_HOME") or Path.cwd() / "neuropilot_home").resolve()


_PARSED_YAML: dict[str, Any] = {}


def _parse_yaml_cached(text: str) -> Any:
    """YAML parsed once per distinct text (a copy each time: callers may change it). Every step of
    a run loads the config, and ruamel's pure-Python parser takes ~0.1 s on a 100-service list;
    keyed by the text itself, so an edited file is always read afresh."""
    if text not in _PARSED_YAML:
        if len(_PARSED_YAML) >= 8:
            _PARSED_YAML.clear()
        _PARSED_YAML[text] = YAML(typ="safe").load(text)
    return copy.deepcopy(_PARSED_YAML[text])


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"Config file {path} does not exist. Set NEUROPILOT_CONFIG to your ops_config.yaml "
            f"or copy {default_config_path()} there."
        ) from exc
    try:
        data = _parse_yaml_cached(text)
    except YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}. Fix the line shown, or restore it from git.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level, not {type(data).__name__}.")
    return data


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of ``data`` with NEUROPILOT_* variables applied (YAML-parsed scalars)."""
    result = copy.deepcopy(data)
    yaml = YAML(typ="safe")
    for name, raw_value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            continue
        top = keys[0]
        if top not in result and len(keys) == 1 and top not in _KNOWN_TOP_LEVEL:
            # Unknown NEUROPILOT_* variables (e.g. NEUROPILOT_SLACK_...) belong to other parts.
            continue
        try:
            value = yaml.load(raw_value)
        except YAMLError:
            value = raw_value
        if value is None:
            value = raw_value
        node = result
        for key in keys[:-1]:
            existing = node.get(key)
            if not isinstance(existing, dict):
                existing = {}
                node[key] = existing
            node = existing
        node[keys[-1]] = value
    return result


_KNOWN_TOP_LEVEL = {
    "sla_target", "slo_p95_ms", "cost_budget", "anomaly_sensitivity", "anomaly_min_deviation", "learning_rate", "mode",
    "policy", "services", "partitions", "paths", "source", "model", "rate_limits", "thresholds", "rollout", "gitops", "delivery", "reward",
    "report",
}


def _number(data: Mapping[str, Any], key: str, where: str, low: float | None = None, high: float | None = None) -> float:
    if key not in data:
        raise ConfigError(f"{where}: missing required key '{key}'.")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}.")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}.{key} must be a finite number, got {value!r}.")
    if low is not None and value < low or high is not None and value > high:
        raise ConfigError(f"{where}.{key} = {value:g} is outside [{low}, {high}].")
    return value


SECTIONS = ("thresholds", "model", "rate_limits", "paths", "partitions", "source", "rollout", "gitops", "reward",
            "delivery", "report")


def _section(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a mapping of settings (key: value lines under it), "
                          f"got {type(value).__name__} {value!r}.")
    return value


def _check_no_secrets(node: Any, trail: str = "") -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).lower() in SECRET_KEYS and value not in (None, ""):
                raise ConfigError(
                    f"{trail}{key} holds a secret in ops_config.yaml. Secrets come only from the "
                    "environment (see README, 'Secrets'); remove it from the file."
                )
            _check_no_secrets(value, f"{trail}{key}.")


def parse_config(data: dict[str, Any], home: Path, config_path: Path | None = None) -> OpsConfig:
    where = str(config_path or "ops_config")
    _check_no_secrets(data)
    for key in SECTIONS:
        _section(data, key, where)
    for key in ("queries", "grafana", "simulated"):
        _section(_section(data, "source", where), key, f"{where}: source")
    _section(_section(data, "reward", where), "weights", f"{where}: reward")
    mode = str(data.get("mode", "monitor"))
    if mode not in ("monitor", "apply"):
        raise ConfigError(f"{where}: mode must be 'monitor' or 'apply', got {mode!r}.")
    policy = str(data.get("policy", "learned"))
    if policy not in POLICIES:
        raise ConfigError(f"{where}: policy must be one of {', '.join(POLICIES)}, got {policy!r}.")
    services = data.get("services") or []
    if isinstance(services, str):
        services = [s.strip() for s in services.split(",") if s.strip()]
    if not isinstance(services, list) or not all(isinstance(s, str) and s for s in services):
        raise ConfigError(f"{where}: services must be a list of service names, got {services!r}.")
    for s in services:
        if not s.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"{where}: service name {s!r} may hold only letters, digits, '-', '_' and '.'.")
    thresholds_raw = data.get("thresholds") or {}
    thresholds: dict[str, ThresholdSpec] = {}
    for name in MANAGED_THRESHOLDS:
        spec = thresholds_raw.get(name)
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: thresholds.{name} is missing; it needs value, min, max and max_step.")
        tw = f"{where}: thresholds.{name}"
        lo, hi = _number(spec, "min", tw), _number(spec, "max", tw)
        if lo > hi:
            raise ConfigError(f"{tw}: min ({lo:g}) is above max ({hi:g}).")
        value = _number(spec, "value", tw)
        if not lo <= value <= hi:
            raise ConfigError(f"{tw}.value = {value:g} is outside its bounds [{lo:g}, {hi:g}].")
        step = _number(spec, "max_step", tw, low=0)
        if name in INTEGER_THRESHOLDS:
            value, lo, hi, step = int(round(value)), int(lo), int(hi), int(step)
        thresholds[name] = ThresholdSpec(name, value, lo, hi, step)
    model_raw = data.get("model") or {}
    defaults = ModelSettings()
    try:
        model = ModelSettings(**{k: _as_type(getattr(defaults, k), model_raw.get(k, getattr(defaults, k)))
                                 for k in defaults.__dataclass_fields__})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: model: {exc}") from None
    if not 1 <= model.min_components <= model.n_components <= model.max_components:
        raise ConfigError(f"{where}: model needs 1 <= min_components <= n_components <= max_components.")
    if model.lookback_hours < 1 or model.min_samples < 2:
        raise ConfigError(f"{where}: model.lookback_hours must be >= 1 and model.min_samples >= 2.")
    rate_limits = {
        "grafana_queries_per_hour": 100,
        "slack_notifications_per_hour": 10,
        "max_applied_changes_per_day": 4,
        "prometheus_queries_per_hour": 0,
        **(data.get("rate_limits") or {}),
    }
    for key, value in rate_limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: rate_limits.{key} must be a whole number >= 0, got {value!r}.")
    paths = {
        "warehouse": "warehouse", "models": "models", "reports": "reports", "state": "state",
        "infra_repo": "infra", "tfvars": "{service}/terraform.tfvars",
        **{k: str(v) for k, v in (data.get("paths") or {}).items()},
    }
    for key, value in paths.items():
        if "://" not in value:
            continue
        # pathlib would quietly turn s3://bucket into a local folder named "s3:".
        if key not in OBJECT_STORAGE_PATHS:
            raise ConfigError(f"{where}: paths.{key} = {value!r} is a URL; only paths.{', paths.'.join(OBJECT_STORAGE_PATHS)} "
                              f"may be on object storage. paths.{key} must be a local or mounted folder "
                              "(docs/operations.md, \"The warehouse on object storage\").")
        from ..storage.objects import check_url

        try:
            check_url(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: paths.{key}: {exc}") from None
    if "{service}" not in paths["tfvars"] and len(services) > 1:
        raise ConfigError(f"{where}: paths.tfvars must contain '{{service}}' when several services are watched.")
    partitions = data.get("partitions") or {}
    start = str(partitions.get("start", "2026-11-01"))
    try:
        if pd.Timestamp(start).strftime("%Y-%m-%d") != start:
            raise ValueError
    except (ValueError, OverflowError):
        raise ConfigError(f"{where}: partitions.start must be a date like 2026-11-01, got {start!r}.") from None
    return OpsConfig(
        sla_target=_number(data, "sla_target", where, 0, 100),
        slo_p95_ms=_number({"slo_p95_ms": 250, **data}, "slo_p95_ms", where, 1),
        cost_budget=_number(data, "cost_budget", where, 0.01),
        anomaly_sensitivity=_number(data, "anomaly_sensitivity", where, 0.0, 0.9999),
        learning_rate=_number(data, "learning_rate", where, 0.0, 1.0),
        mode=mode,
        policy=policy,
        services=tuple(services),
        partitions_start=start,
        home=home,
        paths=paths,
        source=dict(data.get("source") or {"kind": "simulated"}),
        model=model,
        rate_limits=rate_limits,
        thresholds=thresholds,
        monitor_days=int(_number({"monitor_days": 7, **(data.get("rollout") or {})}, "monitor_days", where, 0)),
        gitops={"branch": "main", "remote": "", **(data.get("gitops") or {})},
        reward_weights=_reward_weights(data, where),
        anomaly_min_deviation=_min_deviations(data, where),
        human_hold_hours=_number({"human_hold_hours": 24, **(data.get("rollout") or {})}, "human_hold_hours", where, 0),
        config_path=config_path,
        raw=data,
    )


def _as_type(default: Any, value: Any) -> Any:
    """A model setting as the type of its default, refusing what does not convert exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"settings must be finite numbers, got {value!r}")
    if isinstance(default, int) and float(value) != int(value):
        raise ValueError(f"expected a whole number, got {value!r}")
    return type(default)(value)


# An error rate in percentage points: half a point is ten times a 99.95 % target's rate.
DEFAULT_MIN_DEVIATION = {"error_rate_percent": 0.5}


def _min_deviations(data: dict[str, Any], where: str) -> dict[str, float]:
    from .telemetry import METRIC_COLUMNS

    # Metrics named override the defaults (0 turns one off); the others keep them, also when the
    # key is missing (a config written before it existed) or set from the environment alone.
    given = data.get("anomaly_min_deviation")
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: anomaly_min_deviation must be a mapping of metric: smallest material change "
                          f"(e.g. error_rate_percent: 0.5), got {given!r}.")
    unknown = sorted(set(map(str, given)) - set(METRIC_COLUMNS))
    if unknown:
        raise ConfigError(f"{where}: anomaly_min_deviation names {', '.join(unknown)}, which is not a metric; "
                          f"the metrics are {', '.join(METRIC_COLUMNS)}.")
    return {**DEFAULT_MIN_DEVIATION, **{str(k): _number(given, k, f"{where}.anomaly_min_deviation", 0.0) for k in given}}


def _reward_weights(data: dict[str, Any], where: str) -> dict[str, float]:
    from .reward import RewardConfigError, validate_weights

    weights = (data.get("reward") or {}).get("weights") or {}
    if not weights:
        return {}
    try:
        return validate_weights(weights)
    except RewardConfigError as exc:
        raise ConfigError(f"{where}: reward.weights: {exc}") from None


def load_ops_config(
    path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    home: str | os.PathLike | None = None,
) -> OpsConfig:
    env = os.environ if env is None else env
    config_path = Path(path or env.get("NEUROPILOT_CONFIG") or default_config_path()).resolve()
    home_path = Path(home or env.get("NEUROPILOT_HOME") or Path.cwd() / "neuropilot_home").resolve()
    data = apply_env_overrides(read_yaml(config_path), env)
    return parse_config(data, home_path, config_path)
