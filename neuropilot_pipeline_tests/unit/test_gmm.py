import json
import os

import numpy as np
import pytest

from neuropilot_pipeline.core.gmm import (
    AnomalyModel, GMMSettings, InsufficientSamplesError, ModelFileError, learning_status, train_model,
)

NAMES = ["cpu", "latency", "rate"]


def two_regimes(n=1440, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    half = n // 2
    cpu = np.r_[rng.normal(30, 3, half), rng.normal(70, 3, n - half)] + shift
    latency = np.r_[rng.normal(80, 8, half), rng.normal(160, 10, n - half)]
    rate = np.r_[rng.normal(100, 10, half), rng.normal(400, 20, n - half)]
    return np.c_[cpu, latency, rate]


def test_insufficient_samples_says_how_many_and_what_to_do():
    with pytest.raises(InsufficientSamplesError) as err:
        train_model(two_regimes(40), NAMES)
    message = str(err.value)
    assert "40 usable rows" in message and "at least 48" in message and "lookback_hours" in message


def test_non_finite_rows_do_not_count_as_samples():
    X = two_regimes(60)
    X[:20, 1] = np.nan
    with pytest.raises(InsufficientSamplesError, match="40 usable rows"):
        train_model(X, NAMES)


def test_bic_picks_two_components_for_two_regimes():
    model, report = train_model(two_regimes(), NAMES, GMMSettings(min_components=1, max_components=4))
    assert report.mode == "initial" and report.loss == 1.0 and report.learning_status == "training"
    assert model.n_components == 2


def test_point_between_regimes_scores_high_and_normal_points_low():
    model, _ = train_model(two_regimes(), NAMES)
    normal = model.anomaly_score(np.array([[30, 80, 100], [70, 160, 400]]))
    odd = model.anomaly_score(np.array([[70, 80, 100]]))  # high CPU with low traffic: unseen combination
    assert (np.abs(normal) < 3).all()
    assert odd[0] > 20


def test_warm_start_moves_little_on_same_world_and_converges():
    first, _ = train_model(two_regimes(seed=0), NAMES)
    second, rep2 = train_model(two_regimes(seed=1), NAMES, previous=first)
    third, rep3 = train_model(two_regimes(seed=2), NAMES, previous=second)
    assert rep2.mode == rep3.mode == "warm_start"
    assert second.version != first.version
    assert rep3.loss < 0.02 and learning_status(rep3.loss) == "converged"
    np.testing.assert_allclose(second.scaler_mean, first.scaler_mean)  # warm start keeps the parameter space


def test_drift_triggers_full_retrain():
    first, _ = train_model(two_regimes(), NAMES)
    X = two_regimes(seed=3) * np.array([1, 3, 5]) + np.array([0, 500, 2000])
    _, rep = train_model(X, NAMES, previous=first)
    assert rep.mode == "full_retrain_drift" and rep.drift_score > 0.5


def test_json_round_trip_keeps_scores_and_version(tmp_path):
    model, _ = train_model(two_regimes(), NAMES, log_features=["rate"])
    path = model.save(tmp_path)
    assert path.name == f"{model.version}.json"
    loaded = AnomalyModel.load(path)
    assert loaded.version == model.version
    X = two_regimes(seed=5)[:50]
    np.testing.assert_allclose(loaded.anomaly_score(X), model.anomaly_score(X))
    assert b"pickle" not in path.read_bytes()


def test_hand_edited_model_file_is_refused(tmp_path):
    model, _ = train_model(two_regimes(), NAMES)
    path = model.save(tmp_path)
    doc = json.loads(path.read_text())
    doc["params"]["means"][0][0] += 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="edited or corrupted"):
        AnomalyModel.load(path)
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid NeuroPilot model"):
        AnomalyModel.load(path)


def test_learning_status_thresholds():
    assert learning_status(0.019) == "converged"
    assert learning_status(0.02) == "converging"
    assert learning_status(0.049) == "converging"
    assert learning_status(0.05) == "training"


def test_training_on_two_processes_gives_the_same_versions_as_one():
    # anomaly_model trains many services on several processes: the models (content-hashed
    # versions) must not depend on that, and a service short of samples is reported, not fatal.
    from neuropilot_pipeline.core.gmm import InsufficientSamplesError, train_many

    rng = np.random.default_rng(5)
    jobs = [(f"svc-{i}", np.vstack([rng.normal(0, 1, (200, 3)), rng.normal(4 + i % 3, 1, (200, 3))]), None, {"i": i})
            for i in range(9)]
    jobs.append(("tiny", rng.normal(0, 1, (5, 3)), None, {}))
    serial = train_many(jobs, ["a", "b", "c"], workers=1)
    parallel = train_many(jobs, ["a", "b", "c"], workers=2)
    assert isinstance(serial["tiny"], InsufficientSamplesError) and isinstance(parallel["tiny"], InsufficientSamplesError)
    for key, *_ in jobs[:-1]:
        assert serial[key][0].version == parallel[key][0].version


# ---- native threads, in a fresh interpreter (this one may have scikit-learn loaded already) ----
FRESH_PROCESS = r"""
import json, sys
import numpy as np
import neuropilot_pipeline.definitions  # the code location, as a run process loads it
from threadpoolctl import threadpool_info
import neuropilot_pipeline.core.gmm as gmm

def widest():
    return max(i["num_threads"] for i in threadpool_info())

out = {"loaded_with_code_location": sorted(m for m in ("sklearn", "matplotlib") if m in sys.modules)}
X = np.random.default_rng(0).normal(size=(300, 2))
if sys.argv[1] == "score":  # the anomalies step: scores under sklearn_on_one_thread
    model = gmm.AnomalyModel.from_json(open(sys.argv[2]).read())
    with gmm.sklearn_on_one_thread():
        model.anomaly_score(X)  # builds the mixture: scikit-learn is in use by now
        out["threads"] = widest()
else:  # the model step: one service trains in this process, under map_processes' limit
    real = gmm.train_model
    def traced(*args, **kwargs):
        result = real(*args, **kwargs)
        out["threads"] = widest()
        return result
    gmm.train_model = traced
    gmm.train_many([("svc", X, None, {})], ["a", "b"], workers=1)
print(json.dumps(out))
"""


@pytest.mark.parametrize("step", ["score", "train"])
def test_the_code_location_loads_without_sklearn_and_fits_and_scores_on_one_native_thread(step, tmp_path):
    # scikit-learn brings its own OpenBLAS and OpenMP when it is imported, and threadpoolctl
    # limits only libraries already loaded: imported lazily inside the limit, they would run
    # two threads each, which made training 5x slower (core/parallel.py).
    import subprocess
    import sys

    from neuropilot_pipeline.core.gmm import train_model

    model, _ = train_model(np.random.default_rng(1).normal(size=(300, 2)), ["a", "b"])
    path = tmp_path / "model.json"
    path.write_text(model.to_json())
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, step, str(path)], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"loaded_with_code_location": [], "threads": 1}, out
