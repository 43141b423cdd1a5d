"""Byte-preserving edits of terraform.tfvars: only the managed values change.

An infrastructure repository is sacred: NeuroPilot rewrites the value token of each
managed top-level variable and leaves every other byte alone — comments (#, //, /* */),
blank lines, alignment, ordering, maps, lists, heredocs, other variables, CRLF line endings.
A missing managed variable is appended with a comment saying who manages it. The result is
parsed back with python-hcl2 and checked (new values present, everything else equal) before
it atomically replaces the file; if the existing file does not parse, nothing is written and
the error says where.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import hcl2

from .atomic import atomic_write_text

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMERIC_EXPR = re.compile(r"^\$\{\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\}$")
_HEREDOC = re.compile(r"<<-?([A-Za-z_][A-Za-z0-9_]*)[ \t]*\r?\n")


class TfvarsError(ValueError):
    pass


class TfvarsParseError(TfvarsError):
    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line, self.column = line, column


@dataclass(frozen=True)
class Assignment:
    name: str
    value_start: int
    value_end: int
    line: int


@dataclass
class TfvarsChange:
    path: Path
    old: dict[str, Any]
    new: dict[str, Any]
    changed: bool
    diff: str
    new_text: str = field(default="", repr=False)  # the whole file after the change


# ---- scanning ---------------------------------------------------------------------------------

def _skip_string(text: str, i: int) -> int:
    """i at the opening quote; return the index after the closing quote."""
    n = len(text)
    i += 1
    depth = 0  # ${ ... } interpolation may hold quotes of its own
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "$" and text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if c == "}" and depth:
            depth -= 1
        elif c == '"' and not depth:
            return i + 1
        elif c == "\n" and not depth:
            break
        i += 1
    raise TfvarsParseError("unterminated string", *_line_col(text, i))


def _skip_heredoc(text: str, i: int) -> int:
    m = _HEREDOC.match(text, i)
    assert m
    marker = m.group(1)
    end = re.compile(r"^[ \t]*" + re.escape(marker) + r"[ \t]*\r?$", re.M).search(text, m.end())
    if not end:
        raise TfvarsParseError(f"heredoc <<{marker} is never closed", *_line_col(text, i))
    return end.end()


def _skip_comment(text: str, i: int) -> int | None:
    """If a comment starts at i, the index just past it (a line comment stops at its newline)."""
    if text.startswith("#", i) or text.startswith("//", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j
    if text.startswith("/*", i):
        j = text.find("*/", i + 2)
        if j < 0:
            raise TfvarsParseError("unterminated /* comment", *_line_col(text, i))
        return j + 2
    return None


def _line_col(text: str, i: int) -> tuple[int, int]:
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


def top_level_assignments(text: str) -> list[Assignment]:
    """Every `name = value` at the top level, with the span of its value (scalar values only
    get a tight span; structured values span to their closing bracket)."""
    out: list[Assignment] = []
    i, n, depth = 0, len(text), 0
    line_start = True
    while i < n:
        c = text[i]
        if c == "\n":
            line_start = True
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        end = _skip_comment(text, i)
        if end is not None:
            i = end
            continue
        if c == '"':
            i = _skip_string(text, i)
            line_start = False
            continue
        if text.startswith("<<", i) and _HEREDOC.match(text, i):
            i = _skip_heredoc(text, i)
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif depth == 0 and line_start:
            m = _IDENT.match(text, i)
            if m:
                j = m.end()
                while j < n and text[j] in " \t":
                    j += 1
                if j < n and text[j] == "=" and not text.startswith("==", j):
                    k = j + 1
                    while k < n and text[k] in " \t":
                        k += 1
                    end = _value_end(text, k)
                    out.append(Assignment(m.group(0), k, end, _line_col(text, i)[0]))
                    i = end
                    line_start = False
                    continue
        line_start = False
        i += 1
    return out


def _value_end(text: str, k: int) -> int:
    n = len(text)
    if k < n and text[k] == '"':
        return _skip_string(text, k)
    if text.startswith("<<", k) and _HEREDOC.match(text, k):
        return _skip_heredoc(text, k)
    if k < n and text[k] in "{[":
        depth, i = 0, k
        while i < n:
            c = text[i]
            if c == '"':
                i = _skip_string(text, i)
                continue
            end = _skip_comment(text, i)
            if end is not None:
                i = end
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise TfvarsParseError("unclosed bracket", *_line_col(text, k))
    i = k
    while i < n and text[i] not in "\r\n#" and not text.startswith("//", i) and not text.startswith("/*", i):
        i += 1
    while i > k and text[i - 1] in " \t":
        i -= 1
    return i


# ---- values -----------------------------------------------------------------------------------

def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {_normalise(k): _normalise(v) for k, v in value.items() if k != "__comments__"}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str) and _NUMERIC_EXPR.match(value):
        # python-hcl2 hands back exponent notation (2.5e2) as an expression string.
        return float(_NUMERIC_EXPR.match(value).group(1))
    if isinstance(value, str) and len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        try:
            return json.loads(value)
        except ValueError:
            return value[1:-1]
    return value


def parse_tfvars_text(text: str, source: str = "terraform.tfvars") -> dict[str, Any]:
    try:
        return copy.deepcopy(_parse_cached(text))
    except Exception as exc:  # lark raises several exception types; all mean "does not parse"
        line, col = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f"line {line}, column {col}" if line else "an unknown position"
        raise TfvarsParseError(
            f"{source} does not parse as HCL at {where}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}. "
            "Fix the file (or restore it from git); NeuroPilot wrote nothing.", line, col,
        ) from exc


@lru_cache(maxsize=1024)
def _parse_cached(text: str) -> dict[str, Any]:
    # A cycle parses each service's tfvars several times (simulator, forecast, decision, apply's
    # preview and edit), many services share one text, and HCL parsing costs ~10 ms: parse
    # each distinct text once per process (errors are not cached).
    return _normalise(hcl2.loads(text))


def read_tfvars(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return parse_tfvars_text(path.read_bytes().decode("utf-8"), str(path))


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TfvarsError(f"refusing to write a non-finite number ({value})")
        return str(int(value)) if value.is_integer() else repr(round(value, 6))
    if isinstance(value, str):
        return json.dumps(value)
    raise TfvarsError(f"unsupported value type {type(value).__name__}")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def update_tfvars_text(text: str, updates: Mapping[str, Any], managed_by: str = "NeuroPilot",
                       source: str = "terraform.tfvars") -> str:
    before = parse_tfvars_text(text, source)
    assignments = {a.name: a for a in top_level_assignments(text)}
    newline = "\r\n" if "\r\n" in text else "\n"
    pieces, cursor, appended = [], 0, []
    for a in sorted((assignments[n] for n in updates if n in assignments), key=lambda a: a.value_start):
        current = text[a.value_start:a.value_end]
        if current[:1] in ("{", "[", "<"):
            raise TfvarsError(f"{source} line {a.line}: managed variable {a.name} holds a structured value; "
                              "NeuroPilot only manages numbers, strings and booleans.")
        pieces.append(text[cursor:a.value_start])
        new = format_value(updates[a.name])
        pieces.append(current if _equal(before.get(a.name), _normalise_literal(new)) else new)
        cursor = a.value_end
    pieces.append(text[cursor:])
    result = "".join(pieces)
    for name, value in updates.items():
        if name not in assignments:
            appended.append(f"# Managed by {managed_by}: tuned automatically; edits by hand are adopted as the new baseline.{newline}"
                            f"{name} = {format_value(value)}{newline}")
    if appended:
        if result and not result.endswith(("\n", "\r\n")):
            result += newline
        result += "".join(appended)
    after = parse_tfvars_text(result, source + " (after edit)")
    expected = {**before, **{k: _normalise_literal(format_value(v)) for k, v in updates.items()}}
    if set(after) != set(expected) or any(not _equal(after[k], expected[k]) for k in expected):
        raise TfvarsError(f"editing {source} would change more than the managed values; nothing was written.")
    return result


def _normalise_literal(literal: str) -> Any:
    return parse_tfvars_text(f"v = {literal}\n")["v"]


def _diff(path: Path, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path.name}", f"b/{path.name}"))


def preview_tfvars_updates(path: str | Path, updates: Mapping[str, Any]) -> TfvarsChange:
    path = Path(path)
    old_text = path.read_bytes().decode("utf-8") if path.exists() else ""
    new_text = update_tfvars_text(old_text, updates, source=str(path))
    before = parse_tfvars_text(old_text, str(path))
    return TfvarsChange(path, {k: before.get(k) for k in updates}, dict(updates), new_text != old_text,
                        _diff(path, old_text, new_text), new_text)


def apply_tfvars_updates(path: str | Path, updates: Mapping[str, Any]) -> TfvarsChange:
    change = preview_tfvars_updates(path, updates)
    if change.changed:
        atomic_write_text(change.path, change.new_text, mode=0o644)
    return change
