"""tfvars edits change the managed values and not one other byte."""

import re
from pathlib import Path

import hcl2
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from neuropilot_pipeline.core.tfvars import (
    TfvarsParseError, apply_tfvars_updates, parse_tfvars_text, preview_tfvars_updates, top_level_assignments,
    update_tfvars_text,
)

CORPUS = sorted((Path(__file__).parents[1] / "data" / "tfvars").glob("*.tfvars"))
UPDATES = {"cpu_scale_up_threshold": 85, "cpu_scale_down_threshold": 40, "latency_threshold_ms": 225,
           "min_instances": 3, "max_instances": 150}


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def mask_values(text: str, names) -> str:
    """The text with the value spans of the named top-level variables blanked out."""
    spans = sorted((a.value_start, a.value_end) for a in top_level_assignments(text) if a.name in names)
    out, cursor = [], 0
    for start, end in spans:
        out.append(text[cursor:start] + "<V>")
        cursor = end
    return "".join(out) + text[cursor:]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_only_managed_values_change_byte_for_byte(path):
    original = read(path)
    updated = update_tfvars_text(original, UPDATES)
    before, after = parse_tfvars_text(original), parse_tfvars_text(updated)
    for name, value in UPDATES.items():
        assert after[name] == value
    for name in set(before) - set(UPDATES):
        assert after[name] == before[name]
    present = {n for n in UPDATES if n in before}
    # Everything but the managed value tokens (and what was appended) is identical.
    assert mask_values(updated, present).startswith(mask_values(original, present))
    missing = set(UPDATES) - present
    for name in missing:
        assert re.search(rf"# Managed by NeuroPilot.*\r?\n{name} = {UPDATES[name]}\r?\n", updated)


def test_lookalikes_in_comments_strings_maps_and_heredocs_are_untouched():
    text = read(next(p for p in CORPUS if p.name.startswith("05")))
    updated = update_tfvars_text(text, {"min_instances": 9, "latency_threshold_ms": 300, "max_instances": 50})
    assert "min_instances = 100\nlatency_threshold_ms = 1\nEOT" in updated
    assert "    max_instances = 7\n  EOT" in updated
    text = read(next(p for p in CORPUS if p.name.startswith("04")))
    updated = update_tfvars_text(text, {"cpu_scale_up_threshold": 75, "max_instances": 45})
    assert 'cpu_scale_up_threshold = "label"' in updated and "max_instances = 4\n" in updated
    assert updated.endswith("cpu_scale_up_threshold = 75\nmax_instances = 45\n")


def test_crlf_and_missing_final_newline_are_kept():
    crlf = read(next(p for p in CORPUS if p.name.startswith("06")))
    out = update_tfvars_text(crlf, {"cpu_scale_up_threshold": 90})
    assert out == crlf.replace("= 80\r\n", "= 90\r\n")
    bare = read(next(p for p in CORPUS if p.name.startswith("07")))
    assert update_tfvars_text(bare, {"max_instances": 150}) == bare.replace("200", "150")


def test_unchanged_value_keeps_its_spelling():
    text = read(next(p for p in CORPUS if p.name.startswith("09")))
    assert update_tfvars_text(text, {"latency_threshold_ms": 250, "cpu_scale_up_threshold": 82.5}) == text


def test_unparseable_file_is_refused_with_its_position_and_left_untouched(tmp_path):
    path = tmp_path / "terraform.tfvars"
    broken = 'region = "eu-west-1"\ncpu_scale_up_threshold = = 80\n'
    path.write_text(broken)
    with pytest.raises(TfvarsParseError) as err:
        apply_tfvars_updates(path, {"cpu_scale_up_threshold": 85})
    assert err.value.line == 2 and "line 2" in str(err.value) and "wrote nothing" in str(err.value)
    assert path.read_text() == broken


def test_apply_writes_atomically_and_preview_writes_nothing(tmp_path):
    path = tmp_path / "terraform.tfvars"
    path.write_bytes(read(CORPUS[0]).encode())
    preview = preview_tfvars_updates(path, {"cpu_scale_up_threshold": 90})
    assert preview.changed and "-cpu_scale_up_threshold   = 80" in preview.diff and "+cpu_scale_up_threshold   = 90" in preview.diff
    assert read(path) == read(CORPUS[0])
    change = apply_tfvars_updates(path, {"cpu_scale_up_threshold": 90})
    assert change.changed and hcl2.loads(read(path))["cpu_scale_up_threshold"] == 90
    assert not list(tmp_path.glob(".*.tmp"))
    assert not apply_tfvars_updates(path, {"cpu_scale_up_threshold": 90}).changed


comment = st.sampled_from(["", " # c", " // c = 1", " /* x = 2 */"])
space = st.sampled_from(["", " ", "   ", "\t"])
value = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(list(UPDATES) + ["region", "other"]), value, space, comment),
                min_size=0, max_size=6, unique_by=lambda t: t[0]),
       st.dictionaries(st.sampled_from(list(UPDATES)), value, max_size=5))
def test_fuzz_result_parses_to_exactly_the_expected_values(lines, updates):
    text = "".join(f"{name}{sp}={sp}{val}{cm}\n" for name, val, sp, cm in lines)
    expected = {**parse_tfvars_text(text), **updates}
    out = update_tfvars_text(text, updates)
    got = parse_tfvars_text(out)
    assert set(got) == set(expected)
    for k in expected:
        assert float(got[k]) == pytest.approx(float(expected[k]))
