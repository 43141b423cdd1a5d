"""Comment-preserving edits of ops_config.yaml (ruamel.yaml round trip, atomic write)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from .atomic import atomic_write_text


class YamlEditError(ValueError):
    pass


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a user's long lines
    y.indent(mapping=2, sequence=4, offset=2)  # the style of the shipped ops_config.yaml
    return y


def update_yaml_values(path: str | Path, updates: Mapping[str, Any]) -> bool:
    """Set dotted keys (e.g. "thresholds.cpu_scale_up_threshold.value") in place; comments,
    order and quoting stay. Returns whether the file changed. Nothing is written on error."""
    path = Path(path)
    text = path.read_bytes().decode("utf-8")
    y = _yaml()
    try:
        doc = y.load(text)
    except YAMLError as exc:
        raise YamlEditError(f"{path} is not valid YAML ({exc}); fix it or restore it from git. Nothing was written.") from exc
    changed = False
    for dotted, value in updates.items():
        node = doc
        keys = dotted.split(".")
        for key in keys[:-1]:
            if not isinstance(node, dict) or key not in node:
                raise YamlEditError(f"{path}: key {dotted!r} not found (missing {key!r}). Nothing was written.")
            node = node[key]
        if not isinstance(node, dict) or keys[-1] not in node:
            raise YamlEditError(f"{path}: key {dotted!r} not found. Nothing was written.")
        if node[keys[-1]] != value:
            node[keys[-1]] = value
            changed = True
    if changed:
        buf = io.StringIO()
        y.dump(doc, buf)
        atomic_write_text(path, buf.getvalue(), mode=0o644)
    return changed
