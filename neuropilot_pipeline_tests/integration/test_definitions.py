import subprocess
from pathlib import Path
import sys

from neuropilot_pipeline.definitions import defs


def test_dagster_validates_the_code_location(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
                          env={"DAGSTER_HOME": str(tmp_path),
                                                                            "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All code locations passed validation" in proc.stderr + proc.stdout


def test_asset_graph_is_the_products_chain():
    graph = defs.resolve_asset_graph()
    def parents(name):
        return {k.to_user_string() for k in graph.get(dg_key(name)).parent_keys}
    assert parents("metric_features") == {"raw_metrics"}
    assert {"raw_metrics", "metric_features", "anomaly_model"} <= parents("anomalies")
    assert parents("reward") == {"raw_metrics"}
    assert {"anomalies", "reward", "anomaly_model"} <= parents("threshold_decision")
    assert parents("terraform_vars") == {"threshold_decision"}
    assert parents("anomaly_model") == {"metric_features"}
    assert {"anomalies", "threshold_decision", "terraform_vars", "anomaly_model"} <= parents("daily_report")


def dg_key(name):
    import dagster as dg

    return dg.AssetKey(name)
