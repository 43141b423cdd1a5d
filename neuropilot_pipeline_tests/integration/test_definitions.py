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
    assert parents("anomaly_model") == {"metric_features", "anomaly_model"}  # warm start from the day before
    assert {"anomalies", "threshold_decision", "terraform_vars", "anomaly_model"} <= parents("daily_report")


def test_every_asset_that_carries_state_from_its_previous_partition_declares_it():
    # dagster.yaml lets two backfill runs go at once: what keeps a backfill's partitions of these
    # assets in order is the backfill daemon, which launches a partition only after the ones it
    # depends on, and only declared dependencies count.
    graph = defs.resolve_asset_graph()
    for name in ("anomalies", "threshold_decision", "anomaly_model", "policy_backtest"):
        key = dg_key(name)
        partitions = graph.get(key).partitions_def
        first = partitions.get_first_partition_key()
        second = partitions.get_next_partition_key(first)
        upstream = graph.get_partition_mapping(key, key).get_upstream_mapped_partitions_result_for_partitions(
            partitions.subset_with_partition_keys([second]), partitions, partitions).partitions_subset
        assert list(upstream.get_partition_keys()) == [first], name


def dg_key(name):
    import dagster as dg

    return dg.AssetKey(name)
