"""`neuropilot detect` beside river's online detectors and stumpy's matrix profile: throughput and NAB score.

    pip install -e .[bench]        # the peers, river and stumpy (or: pip install river stumpy)
    python benchmarks/detect.py [--data ../shared/data/nab] [--peers hst,gaussian,sad,pad-hw] [--repeat 3]

For every file in NAB's labels (../shared/data/nab) both run on the same rows in one
single-threaded process (numba/BLAS/OpenMP threads 1: one core at a time, not pinned, so
another job on a core does not hold it up), timed with time.perf_counter, best of --repeat
runs per file; both are scored by the same scorer (core/nab.py, standard profile).

Ours is timed two ways. Like for like with the peer (the speed ratio): the detection itself,
`detect_chunk` with the default DetectorConfig on the same prepared series the peer gets (the
values as floats, the timestamps already parsed), producing scores, verdicts and severities.
End to end: benchmarks/nab.py's `detect_ours`, i.e. `detect_dataframe`, the code path of
`neuropilot detect` (parsing the timestamp strings, building the output table); the two give
the same verdicts, which the script checks. Its numba kernel is compiled on the first
call, into an empty cache so the figure is a real compile; that second is reported on its own
and left out of the throughput (later runs of the CLI load the kernel from numba's disk cache).

The peer: river (https://riverml.xyz), the maintained Python library for online learning.
Its univariate online detectors, each fed one point at a time (score_one, then learn_one):
  hst       MinMaxScaler | HalfSpaceTrees(seed=42), river's documented recipe
  gaussian  GaussianScorer over the last day of points (rolling z, like our z-score detector)
  sad       StandardAbsoluteDeviation (running mean and standard deviation)
  pad-hw    PredictiveAnomalyDetection on an additive HoltWinters(0.3, 0.1, 0.6) with a daily
            season (the seasonal, level-following one, closest to our seasonal detector); the
            forecaster cannot forecast before it has seen one season, so it is scored 0 till then
The peer for our shape detector (a left-nearest-neighbour search over the past week, which
river has nothing like): stumpy (https://stumpy.readthedocs.io), the maintained matrix-profile
library, whose `stumpi` updates the matrix profile one point at a time:
  mp        stumpi(egress=True, normalize=False) over 7 days of points, 2-hour shapes; its left
            profile over the running mean of earlier distances, as ours normalises
The season / window length (points per day, from the median step) is handed to the peer as
configuration, and the values as a list of Python floats, both prepared outside the timed
region; a NaN score (a constant window) counts 0. If river raises on a file (pad-hw: its
HoltWinters divides by the first season's mean, 0 on ec2_disk_write_bytes), the peer has no
detections from there on and that file is left out of its throughput and the speed ratio.

The peer's scores become detections the way NAB treats its own baselines, generously: one
threshold for all files, the one (of the pooled scores' quantiles 1 - 10^-k, k = 0.5..5 step
0.1) that maximises the peer's total NAB score on these very files; nothing fires in NAB's
probation period (first 15 %, at most 750 rows; the scorer ignores those rows anyway; ours has
a one-day cold start of its own). Ours is
not tuned here, but its defaults were chosen on these files earlier (see git log), so both are
in-sample. Ours also raises one alarm per incident (at most one a day, or two when the first
incident went quiet for 6 hours); as a check the panel also gives every peer that same rule
(threshold re-optimised), which NAB's baselines do not have.
The headline peer (per-file table and JSON) is the panel's best NAB score under NAB's rule:
its best shot, whatever its speed.

ADTK (seasonal and level-shift detectors) was tried: adtk 0.6.2 installs and imports with
pandas 3.1 / numpy 2.4, SeasonalAD runs, but LevelShiftAD and PersistAD raise
"TypeError: Invalid value 'nan' for dtype 'bool'" (ADTK writes NaN into a bool Series, which
pandas 3 refuses); ADTK's detectors are also batch (fitted on the whole series, not causal).
It is not used; the script re-checks it when it is installed.

Prints a row per file, the summary, the panel, versions, the command, then one JSON line.
"""

import atexit
import os
import shutil
import tempfile

# One thread, set before numpy/numba load; an empty numba cache so the first call really compiles.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
NUMBA_CACHE = tempfile.mkdtemp(prefix="neuropilot-bench-numba-")
os.environ["NUMBA_CACHE_DIR"] = NUMBA_CACHE
atexit.register(shutil.rmtree, NUMBA_CACHE, True)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nab import DATA, detect_ours, nab_files, nab_summary  # noqa: E402

from neuropilot_pipeline.core.detectors import DetectorConfig, detect_chunk  # noqa: E402
from neuropilot_pipeline.core.nab import normalised, probation_length, score_file  # noqa: E402

PEERS = {
    "hst": "HalfSpaceTrees behind MinMaxScaler",
    "gaussian": "GaussianScorer, 1-day window",
    "sad": "StandardAbsoluteDeviation",
    "pad-hw": "PredictiveAnomalyDetection on daily HoltWinters",
    "mp": "stumpy stumpi: incremental left matrix profile, raw values",
}
RIVER_PEERS = ("hst", "gaussian", "sad", "pad-hw")


def library(peer: str) -> str:
    return "river" if peer in RIVER_PEERS else "stumpy"
THRESHOLD_QUANTILES = 1 - 10 ** -np.arange(0.5, 5.01, 0.1)
SUPPRESS_MINUTES = DetectorConfig().suppress_minutes
MIN_GAP_MINUTES = DetectorConfig().min_alarm_gap_minutes
QUIET_MINUTES = DetectorConfig().incident_quiet_minutes


def build_peer(peer: str, per_day: int):
    """(model, takes_features, blind points): takes_features models score {"value": v}, others (None, v)."""
    from river import anomaly, preprocessing, time_series

    if peer == "hst":
        return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42), True, 0
    if peer == "gaussian":
        return anomaly.GaussianScorer(window_size=per_day), False, 0
    if peer == "sad":
        return anomaly.StandardAbsoluteDeviation(), False, 0
    forecaster = time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=per_day)
    return anomaly.PredictiveAnomalyDetection(forecaster, horizon=1, n_std=3.5), False, per_day


def detect_matrix_profile(values: list, per_day: int) -> tuple[tuple[np.ndarray, str | None], float]:
    """The peer for our shape detector: stumpy's incremental matrix profile (stumpi, not
    z-normalised) over the same 2-hour shapes and 7-day window, one point at a time; its left
    profile (each shape's distance to the nearest earlier one) over the running mean of earlier
    distances (half-life 7 days), as ours normalises. The first window is its batch start."""
    import stumpy

    x = np.asarray(values, dtype=float)
    m, window = max(3, per_day // 12), 7 * per_day + max(3, per_day // 12)
    x = np.where(np.isfinite(x), x, 0.0)
    out = np.zeros(len(x))
    t0 = time.perf_counter()
    stream = stumpy.stumpi(x[:min(window, len(x))], m=m, egress=True, normalize=False)
    left = list(stream.left_P_)
    for v in x[window:]:
        stream.update(v)
        left.append(stream.left_P_[-1])
    decay, num, den = 0.5 ** (1.0 / (7 * per_day)), 0.0, 0.0
    for i, d in enumerate(left):
        j = i + m - 1  # the shape ending at point j
        if np.isfinite(d):
            if den > 0:
                out[j] = d / max(num / den, 1e-12)
            num, den = num * decay + d, den * decay + 1.0
    return (out, None), time.perf_counter() - t0


def detect_peer(peer: str, values: list, per_day: int) -> tuple[tuple[np.ndarray, str | None], float]:
    """((score per point, error), seconds): scored before learning, as a stream. If river raises,
    the rest of the file scores 0 (no detections) and the error is returned."""
    if peer == "mp":
        return detect_matrix_profile(values, per_day)
    out = np.zeros(len(values))
    error = None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        t0 = time.perf_counter()
        model, takes_features, blind = build_peer(peer, per_day)
        try:
            if takes_features:
                for i, v in enumerate(values):
                    x = {"value": v}
                    out[i] = model.score_one(x)
                    model.learn_one(x)
            else:
                for i, v in enumerate(values):
                    if i >= blind:
                        out[i] = model.score_one(None, v)
                    model.learn_one(None, v)
        except Exception as exc:  # noqa: BLE001 - the peer's own failure, reported
            out[i:] = 0.0
            error = f"row {i}: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - t0
    return (np.nan_to_num(out, nan=0.0), error), elapsed


def detect_prepared(values: np.ndarray, ts: pd.DatetimeIndex) -> tuple[np.ndarray, float]:
    """(verdicts, seconds): our detectors on a prepared series, as the peer is fed one."""
    t0 = time.perf_counter()
    result, _ = detect_chunk(values[None, :], ts, None, DetectorConfig())
    return result.is_anomaly[0], time.perf_counter() - t0


def best_of(repeat: int, run):
    """run() -> (result, seconds), `repeat` times: the last result and the fastest time."""
    runs = [run() for _ in range(repeat)]
    return runs[-1][0], min(seconds for _, seconds in runs)


def suppress(detections: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """Ours' rule, one alarm per incident: after an alarm, none until SUPPRESS_MINUTES have
    passed, or MIN_GAP_MINUTES have and QUIET_MINUTES passed without a detection (for a peer,
    a point over its threshold is what is unusual)."""
    out = np.zeros_like(detections)
    last_alarm, last_detection = -np.inf, -np.inf
    for i in np.flatnonzero(detections):
        since = minutes[i] - last_alarm
        if since >= SUPPRESS_MINUTES or (since >= MIN_GAP_MINUTES and minutes[i] - last_detection >= QUIET_MINUTES):
            out[i], last_alarm = True, minutes[i]
        last_detection = minutes[i]
    return out


class Corpus:
    def __init__(self, data: Path):
        self.files = list(nab_files(data))
        self.ts = {n: pd.DatetimeIndex(pd.to_datetime(df["timestamp"])) for n, df, _ in self.files}
        self.ts_utc = {n: ts.tz_localize("UTC") if ts.tz is None else ts for n, ts in self.ts.items()}
        self.minutes = {n: ts.as_unit("s").asi8 / 60.0 for n, ts in self.ts.items()}
        self.windows = {n: w for n, _, w in self.files}
        self._memo: dict = {}

    def score(self, name: str, detections: np.ndarray):
        key = (name, np.packbits(detections).tobytes())
        if key not in self._memo:
            self._memo[key] = score_file(self.ts[name], detections, self.windows[name])
        return self._memo[key]

    def peer_detections(self, name: str, scores: np.ndarray, threshold: float, suppressed: bool) -> np.ndarray:
        n = len(scores)
        det = (scores >= threshold) & (np.arange(n) >= probation_length(n))
        return suppress(det, self.minutes[name]) if suppressed else det

    def best_threshold(self, scores: dict[str, np.ndarray], suppressed: bool) -> tuple[float, dict, dict]:
        """The threshold maximising the peer's normalised NAB score: (threshold, total, per-file scores)."""
        candidates = np.unique(np.quantile(np.concatenate(list(scores.values())), THRESHOLD_QUANTILES))
        best = None
        for thr in candidates:
            per_file = {n: self.score(n, self.peer_detections(n, s, thr, suppressed)) for n, s in scores.items()}
            total = normalised(per_file.values())
            if best is None or total["score"] > best[1]["score"]:
                best = (float(thr), total, per_file)
        return best


def adtk_status(df: pd.DataFrame) -> str:
    try:
        import adtk
        from adtk.detector import LevelShiftAD
    except ImportError:
        return "ADTK not installed here (adtk 0.6.2 fails under pandas 3, see the docstring; pip install adtk to re-check)"
    series = df.set_index(pd.to_datetime(df["timestamp"]))["value"]
    try:
        LevelShiftAD(window=5).fit_detect(series)
    except Exception as exc:  # noqa: BLE001 - reporting whatever breaks it
        return f"ADTK {adtk.__version__} not usable with pandas {pd.__version__}: LevelShiftAD -> {type(exc).__name__}: {exc}"
    return f"ADTK {adtk.__version__} runs here but is not compared (batch detectors, not causal)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of: {', '.join(PEERS)}")
    ap.add_argument("--repeat", type=int, default=3, help="runs per file and detector; the fastest counts")
    args = ap.parse_args()
    peers = args.peers.split(",")
    if unknown := [p for p in peers if p not in PEERS]:
        sys.exit(f"unknown peer(s) {unknown}; choose from {list(PEERS)}")
    try:
        import river
        import stumpy
    except ImportError:
        sys.exit("the peers, river and stumpy, are not installed: pip install -e .[bench]  (or: pip install river stumpy)")
    if "mp" in peers:  # stumpy compiles its numba kernels on first use: not in its throughput either
        detect_matrix_profile(np.sin(np.arange(400) / 7.0).tolist(), 48)
    started = time.perf_counter()
    corpus = Corpus(args.data)

    t0 = time.perf_counter()
    detect_ours(corpus.files[0][1])
    compile_seconds = time.perf_counter() - t0

    ours_det, ours_s, peer_scores, peer_s = {}, {}, {p: {} for p in peers}, {p: {} for p in peers}
    e2e_s = {}
    for name, df, _ in corpus.files:
        ours_det[name], e2e_s[name] = best_of(args.repeat, lambda: detect_ours(df))
        prepared = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float)
        same, ours_s[name] = best_of(args.repeat, lambda: detect_prepared(prepared, corpus.ts_utc[name]))
        if not np.array_equal(same, ours_det[name]):
            sys.exit(f"{name}: the prepared-series detection differs from neuropilot detect's; not comparable")
        values = prepared.tolist()
        per_day = max(2, round(86400 / corpus.ts[name].to_series().diff().median().total_seconds()))
        for p in peers:
            # stumpy takes ~0.5 ms a point: one run of it (the time of a run barely varies at that cost)
            peer_scores[p][name], peer_s[p][name] = best_of(args.repeat if p != "mp" else 1,
                                                            lambda: detect_peer(p, values, per_day))
    detect_seconds = time.perf_counter() - started
    errors = {p: {n: r[1] for n, r in peer_scores[p].items() if r[1]} for p in peers}
    peer_scores = {p: {n: r[0] for n, r in peer_scores[p].items()} for p in peers}

    ours_files = {n: corpus.score(n, d) for n, d in ours_det.items()}
    ours_total = normalised(ours_files.values())
    panel = {p: (corpus.best_threshold(peer_scores[p], False), corpus.best_threshold(peer_scores[p], True))
             for p in peers}
    head = max(peers, key=lambda p: panel[p][0][1]["score"])
    head_thr, head_total, head_files = panel[head][0]
    rows = {n: len(df) for n, df, _ in corpus.files}
    points = sum(rows.values())
    ours_pps = points / sum(ours_s.values())
    e2e_pps = points / sum(e2e_s.values())
    # A file the peer raised on is left out of its throughput and of the speed ratio (same files for both).
    ok = {p: [n for n in rows if n not in errors[p]] for p in peers}
    pps = {p: sum(rows[n] for n in ok[p]) / sum(peer_s[p][n] for n in ok[p]) for p in peers}
    speedup = {p: sum(peer_s[p][n] for n in ok[p]) / sum(ours_s[n] for n in ok[p]) for p in peers}
    e2e_speedup = {p: sum(peer_s[p][n] for n in ok[p]) / sum(e2e_s[n] for n in ok[p]) for p in peers}

    print(f"peer: {library(head)} {head} ({PEERS[head]}); best of {args.repeat} runs per file, one single-threaded process")
    print(f"{'file':55s} {'rows':>6s} {'ours pts/s':>11s} {'peer pts/s':>11s} {'ours raw':>9s} {'peer raw':>9s}")
    for name in rows:
        print(f"{name:55s} {rows[name]:6d} {rows[name] / ours_s[name]:11,.0f} {'raised' if name in errors[head] else f'{rows[name] / peer_s[head][name]:,.0f}':>11s} "
              f"{ours_files[name].raw:9.3f} {head_files[name].raw:9.3f}")

    print(f"\n{len(rows)} files, {points:,} points")
    print(f"{'ours (detection):':27s} {ours_pps:>9,.0f} points/s; NAB {nab_summary(ours_total)}")
    print(f"{'ours (neuropilot detect,':27s} {e2e_pps:>9,.0f} points/s end to end: parsing timestamp strings and "
          f"building the output table too ({e2e_speedup[head]:.2f}x the peer)")
    print(f"{f'peer ({library(head)} {head}):':27s} {pps[head]:>9,.0f} points/s; NAB {nab_summary(head_total)}"
          f"; threshold score >= {head_thr:.6g}")
    print(f"speed ratio ours / peer: {speedup[head]:.2f}x   NAB ours - peer: "
          f"{ours_total['score'] - head_total['score']:+.1f}")
    print(f"numba first call (compile, empty cache): {compile_seconds:.2f} s, not in the throughput")

    print("\npanel: one threshold for all files, chosen to maximise its NAB; probation masked"
          "\n             (+1/inc: ours' one-alarm-per-incident rule added, threshold re-chosen)")
    print(f"{'peer':9s} {'points/s':>9s} {'ours/peer':>9s} {'NAB':>7s} {'hit':>5s} {'FP':>5s} {'threshold':>10s}"
          f" | {'+1/inc NAB':>10s} {'hit':>5s} {'FP':>5s} {'threshold':>10s}")
    for p in peers:
        (thr, tot, _), (thr1, tot1, _) = panel[p]
        print(f"{p:9s} {pps[p]:9,.0f} {speedup[p]:8.2f}x {tot['score']:7.1f} {tot['detected']:2d}/{tot['windows']:2d}"
              f" {tot['false_positives']:5d} {thr:10.4g} | {tot1['score']:10.1f} {tot1['detected']:2d}/{tot1['windows']:2d}"
              f" {tot1['false_positives']:5d} {thr1:10.4g}")
        for name, error in errors[p].items():
            print(f"  {p} raised on {name} ({error}): no detections after it, left out of its points/s")
    print(f"{'ours':9s} {ours_pps:9,.0f} {1:8.2f}x {ours_total['score']:7.1f} {ours_total['detected']:2d}/"
          f"{ours_total['windows']:2d} {ours_total['false_positives']:5d} {'(default)':>10s}")
    print(adtk_status(corpus.files[0][1]))

    print(f"\nversions: python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"numba {numba.__version__}, river {river.__version__}, stumpy {stumpy.__version__}")
    print(f"total time {time.perf_counter() - started:.0f} s (detection runs {detect_seconds:.0f} s, "
          f"peer threshold search the rest)")
    print("reproduce: pip install -e .[bench] && python benchmarks/detect.py"
          + ("" if args.peers == ",".join(PEERS) else f" --peers {args.peers}"))
    print(json.dumps({"points": points, "ours_points_per_s": round(ours_pps),
                      "ours_end_to_end_points_per_s": round(e2e_pps), "speedup_end_to_end": round(e2e_speedup[head], 2),
                      "peer": f"{library(head)} {(river if library(head) == 'river' else stumpy).__version__} "
                              f"{PEERS[head]}",
                      "peer_points_per_s": round(pps[head]), "speedup": round(speedup[head], 2),
                      "ours_nab": round(ours_total["score"], 1), "peer_nab": round(head_total["score"], 1)}))


if __name__ == "__main__":
    main()
