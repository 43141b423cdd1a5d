"""Many services in one deployment: each has its own baselines, model, decisions and tfvars.

One service's anomaly must never move another service's thresholds, and a run for some
services must leave the others' data as it was.
"""

import shutil
import subprocess

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.assets.apply import decide_and_apply
from neuropilot_pipeline.assets.common import SERVICES_TAG
from neuropilot_pipeline.assets.decide import reward
from neuropilot_pipeline.assets.detect import anomalies, forecast_alerts
from neuropilot_pipeline.assets.features import metric_features
from neuropilot_pipeline.assets.ingest import raw_metrics
from neuropilot_pipeline.assets.model import anomaly_model
from neuropilot_pipeline.assets.partitions import windows_of_day
from neuropilot_pipeline.resources.neuropilot import NeuroPilotResource
from neuropilot_pipeline.resources.sources import MetricsSourceResource
from neuropilot_pipeline.storage.state import StateStore
from neuropilot_pipeline.storage.warehouse import Warehouse
from neuropilot_pipeline_tests.dagster_results import materializations
from neuropilot_pipeline_tests.e2e.homes import apply_mode_home

SERVICES = ["web", "api", "db"]
DAY1, DAY2 = "2026-11-01", "2026-11-02"
CYCLE = [raw_metrics, metric_features, anomalies, forecast_alerts, reward, decide_and_apply]
TABLES = ["raw_metrics", "metric_features", "anomalies", "forecast_alerts", "reward", "threshold_decisions",
          "applied_changes"]


class SpikedSource(MetricsSourceResource):
    """The simulated source, with one service's latency, errors and CPU blown up in some windows."""

    spiked_service: str = "api"
    spiked_windows: list[str] = []
    silent_windows: list[str] = []  # windows in which the spiked service reports nothing at all

    def collect(self, cfg, state, start, end, partition_key, previous_partition_key, only=None):
        collected = super().collect(cfg, state, start, end, partition_key, previous_partition_key, only)
        if partition_key in self.silent_windows:
            collected.frame = collected.frame[collected.frame["service"] != self.spiked_service].reset_index(drop=True)
        if partition_key in self.spiked_windows:
            frame = collected.frame
            hit = (frame["service"] == self.spiked_service) & (frame["ts"] >= start + pd.Timedelta(hours=2)) & \
                (frame["ts"] < start + pd.Timedelta(hours=4))
            frame.loc[hit, "p95_latency_ms"] *= 8.0
            frame.loc[hit, "error_rate_percent"] += 25.0
            frame.loc[hit, "cpu_percent"] = 99.0
        return collected


def make_home(path):
    return apply_mode_home(path, SERVICES)


def cycle(home, window, spiked=(), tags=None, silent=()):
    resources = {"neuropilot": NeuroPilotResource(config_path=str(home / "ops_config.yaml"), home=str(home)),
                 "metrics_source": SpikedSource(spiked_windows=list(spiked), silent_windows=list(silent))}
    result = dg.materialize(CYCLE, partition_key=window, instance=dg.DagsterInstance.ephemeral(),
                            resources=resources, tags=tags or {}, raise_on_error=False)
    return result


def train(home, day):
    resources = {"neuropilot": NeuroPilotResource(config_path=str(home / "ops_config.yaml"), home=str(home))}
    assert dg.materialize([anomaly_model], partition_key=day, instance=dg.DagsterInstance.ephemeral(),
                          resources=resources).success


def table(home, name, windows):
    df = Warehouse(home / "warehouse").read_partitions(name, windows)
    # When a model was trained and a commit's SHA (time, parent, run id) differ between homes by nature.
    drop = [c for c in ("trained_at", "commit", "tfvars") if c in df.columns]  # tfvars: the home's own path
    return df.drop(columns=drop)


def of(df, services):
    sort = [c for c in ("partition", "service", "metric", "ts") if c in df.columns]
    return df[df["service"].isin(services)].sort_values(sort).reset_index(drop=True)


@pytest.fixture(scope="module")
def two_homes(tmp_path_factory):
    """Day 1 and its model for three services, then day 2 twice: as it was, and with api spiked."""
    root = tmp_path_factory.mktemp("multi")
    calm = root / "calm"
    make_home(calm)
    for window in windows_of_day(DAY1):
        assert cycle(calm, window).success
    train(calm, DAY1)
    spiked = root / "spiked"
    shutil.copytree(calm, spiked, symlinks=True)
    day2 = windows_of_day(DAY2)[:3]
    for window in day2:
        assert cycle(calm, window).success
        assert cycle(spiked, window, spiked=[day2[1]]).success
    return calm, spiked, day2


def test_one_services_anomaly_never_moves_another_services_thresholds(two_homes):
    calm, spiked, day2 = two_homes
    others = ["web", "db"]
    # The spike is real for api: anomalies, a missed SLA, and a different decision.
    spiked_anomalies = of(table(spiked, "anomalies", day2), ["api"])
    assert spiked_anomalies["severity"].isin(["high", "critical"]).any()
    calm_rewards, spiked_rewards = of(table(calm, "reward", day2), ["api"]), of(table(spiked, "reward", day2), ["api"])
    assert (spiked_rewards["sla_percent"] < calm_rewards["sla_percent"]).any()
    calm_api, spiked_api = of(table(calm, "threshold_decisions", day2), ["api"]), \
        of(table(spiked, "threshold_decisions", day2), ["api"])
    assert not calm_api[["reason", "new_cpu_scale_up_threshold"]].equals(spiked_api[["reason", "new_cpu_scale_up_threshold"]])
    # Everything of web and db is exactly as without the spike.
    for name in TABLES:
        pd.testing.assert_frame_equal(of(table(calm, name, day2), others), of(table(spiked, name, day2), others),
                                      obj=f"{name} of web and db")
    for service in others:
        assert (calm / "infra" / service / "terraform.tfvars").read_bytes() == \
            (spiked / "infra" / service / "terraform.tfvars").read_bytes()
        for window in day2:
            np.testing.assert_equal(StateStore(calm / "state").read_services("policy", window)[service],
                                    StateStore(spiked / "state").read_services("policy", window)[service])


def test_a_run_for_one_service_replaces_its_rows_and_keeps_the_others(two_homes, tmp_path):
    calm, _, day2 = two_homes
    home = tmp_path / "home"
    shutil.copytree(calm, home, symlinks=True)
    window = day2[-1]
    before = {name: table(home, name, [window]) for name in TABLES}
    commits = subprocess.run(["git", "-C", str(home / "infra"), "rev-list", "--count", "HEAD"], capture_output=True,
                             text=True, check=True).stdout
    result = cycle(home, window, spiked=[window], tags={SERVICES_TAG: "api"})
    assert result.success
    for name in TABLES:
        after = table(home, name, [window])
        pd.testing.assert_frame_equal(of(after, ["web", "db"]), of(before[name], ["web", "db"]), obj=name)
        # No other service's rows vanish or appear. (api's may: its window is spiked now, so it
        # can have anomalies or forecast alerts it did not have; its raw rows differ, below.)
        assert set(after["service"]) - {"api"} == set(before[name]["service"]) - {"api"}, name
    # api's rows were recomputed (its window is spiked now); nobody else got a commit.
    assert not of(table(home, "raw_metrics", [window]), ["api"])["p95_latency_ms"].equals(
        of(before["raw_metrics"], ["api"])["p95_latency_ms"])
    log = subprocess.run(["git", "-C", str(home / "infra"), "log", "--name-only", "--format=", f"-{10}"],
                         capture_output=True, text=True, check=True).stdout
    new_commits = int(subprocess.run(["git", "-C", str(home / "infra"), "rev-list", "--count", "HEAD"],
                                     capture_output=True, text=True, check=True).stdout) - int(commits)
    touched = [line for line in log.splitlines() if line.strip()][:new_commits]
    assert all(path.startswith("api/") for path in touched)


def test_a_run_for_an_unknown_service_stops_with_the_watched_list(two_homes, tmp_path):
    calm, _, day2 = two_homes
    home = tmp_path / "home"
    shutil.copytree(calm, home, symlinks=True)
    result = cycle(home, day2[-1], tags={SERVICES_TAG: "payments"})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "payments" in message and "services" in message


def test_explain_follows_one_services_rows_past_a_run_for_another(tmp_path):
    # Lineage per service: after a run for api only, web's chain still names the run that
    # computed web's rows, and shows web's decision, not api's.
    from neuropilot_pipeline.lineage import explain, format_chain

    home = tmp_path / "home"
    make_home(home)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"neuropilot": NeuroPilotResource(config_path=str(home / "ops_config.yaml"), home=str(home)),
                 "metrics_source": SpikedSource()}
    window = windows_of_day(DAY1)[0]
    full = dg.materialize(CYCLE, partition_key=window, instance=instance, resources=resources)
    only_api = dg.materialize(CYCLE, partition_key=window, instance=instance, resources=resources,
                              tags={SERVICES_TAG: "api"})
    assert full.success and only_api.success
    web = explain(instance, window, "web")
    assert {link.run_id for link in web if link.run_id} == {full.run_id}
    decision = next(link for link in web if link.asset == "threshold_decision")
    assert set(decision.metadata["decisions"]) == {"web"}
    api = explain(instance, window, "api")
    assert {link.run_id for link in api if link.run_id} == {only_api.run_id}
    assert set(next(link for link in api if link.asset == "threshold_decision").metadata["decisions"]) == {"api"}
    assert "threshold_decision" in format_chain(api)


def test_a_service_silent_for_a_window_holds_nobody_up_and_keeps_what_its_policy_learned(two_homes, tmp_path):
    calm, _, day2 = two_homes
    home = tmp_path / "home"
    shutil.copytree(calm, home, symlinks=True)
    silent, after = day2[-1], (pd.Timestamp(day2[-1][:10]) + pd.Timedelta(hours=18)).strftime("%Y-%m-%d-%H:%M")
    result = cycle(home, silent, silent=[silent])
    assert result.success
    decision = materializations(result, "threshold_decision")[-1]
    assert set(decision.metadata["skipped"].value) == {"api"}
    assert sorted(table(home, "threshold_decisions", [silent])["service"]) == ["db", "web"]
    state = lambda w: StateStore(home / "state").read_services("policy", w)["api"]  # noqa: E731
    np.testing.assert_equal(state(silent), state(day2[-2]))  # carried unchanged through the silent window
    assert cycle(home, after).success  # and the next window goes on from it
    before, now = state(day2[-2]), state(after)
    assert now["policy"]["decisions"] == before["policy"]["decisions"] + 1
