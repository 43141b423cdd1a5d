"""`neuropilot demo`, the README's main job, run as a user runs it."""

import subprocess
import sys


def test_demo_runs_and_ends_with_the_summary(tmp_path):
    home = tmp_path / "home"
    env_cmd = [sys.executable, "-m", "neuropilot_pipeline.cli", "demo", "--days", "2", "--home", str(home)]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "=== NeuroPilot demo summary ===" in out
    assert "Anomalies by severity:" in out and "fixed 80/30 thresholds" in out
    assert len([l for l in out.splitlines() if l.startswith("  2026-11-0") and "SLA" in l]) == 8
    assert list((home / "warehouse" / "raw_metrics").glob("*.parquet"))
    assert list((home / "models" / "web").glob("*.json"))
    assert (home / "reports" / "daily_report_20261102.json").exists()
    assert (home / "infra" / "web" / "terraform.tfvars").exists()
    # A second demo in the same home starts fresh instead of mixing runs.
    again = subprocess.run(env_cmd, capture_output=True, text=True, timeout=600,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert again.returncode == 0 and again.stdout.count("Decisions: 8 windows") == 1
