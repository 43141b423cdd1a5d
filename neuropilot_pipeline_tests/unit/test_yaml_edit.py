import shutil

import pytest

from neuropilot_pipeline.core.config import default_config_path, load_ops_config
from neuropilot_pipeline.core.yaml_edit import YamlEditError, update_yaml_values


def test_values_change_and_every_comment_stays(tmp_path):
    path = tmp_path / "ops_config.yaml"
    shutil.copyfile(default_config_path(), path)
    original = path.read_text()
    assert update_yaml_values(path, {"thresholds.cpu_scale_up_threshold.value": 85, "mode": "apply"})
    updated = path.read_text()
    assert [l for l in original.splitlines() if l.lstrip().startswith("#")] == \
           [l for l in updated.splitlines() if l.lstrip().startswith("#")]
    changed = [(a, b) for a, b in zip(original.splitlines(), updated.splitlines()) if a != b]
    assert changed == [("mode: monitor", "mode: apply"),
                       ("  cpu_scale_up_threshold: {value: 80, min: 50, max: 95, max_step: 10}",
                        "  cpu_scale_up_threshold: {value: 85, min: 50, max: 95, max_step: 10}")]
    cfg = load_ops_config(path, env={})
    assert cfg.mode == "apply" and cfg.thresholds["cpu_scale_up_threshold"].value == 85
    assert not update_yaml_values(path, {"mode": "apply"})


def test_unknown_key_or_broken_file_writes_nothing(tmp_path):
    path = tmp_path / "ops_config.yaml"
    shutil.copyfile(default_config_path(), path)
    before = path.read_bytes()
    with pytest.raises(YamlEditError, match="thresholds.nope.value"):
        update_yaml_values(path, {"thresholds.nope.value": 1})
    assert path.read_bytes() == before
    path.write_text("a: [1,\n")
    with pytest.raises(YamlEditError, match="not valid YAML"):
        update_yaml_values(path, {"a": 2})


def test_a_read_only_ops_config_is_left_as_is_with_a_warning_after_the_commit(tmp_path, monkeypatch):
    """In a container ops_config.yaml is often a read-only ConfigMap mount: applying a decision
    must not fail after its commit just because the file cannot record the new values."""
    import errno
    from types import SimpleNamespace

    from neuropilot_pipeline.assets import apply

    warnings = []
    context = SimpleNamespace(log=SimpleNamespace(warning=warnings.append))

    def read_only(path, updates):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(apply, "update_yaml_values", read_only)
    apply._record_in_config(context, tmp_path / "ops_config.yaml", {"cpu_scale_up_threshold": 85})
    assert "read-only file system" in warnings[0] and "tfvars commit" in warnings[0]

    def disk_full(path, updates):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(apply, "update_yaml_values", disk_full)
    with pytest.raises(OSError):  # anything else still fails the run
        apply._record_in_config(context, tmp_path / "ops_config.yaml", {"cpu_scale_up_threshold": 85})
