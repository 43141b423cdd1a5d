"""NAB benchmark: `neuropilot detect`'s verdicts on the NAB subset, scored with NAB's standard profile.

    python benchmarks/nab.py [--data ../shared/data/nab] [--robustness]

Prints a row per file, then the normalised score (null 0, perfect 100), windows detected,
false positives, seconds per 10,000 points and points per second (one process, one core).

--robustness stands in for series the detector has never seen: the same files as other exports
of them would arrive (another unit, another clock, missed samples, coarser steps, added noise,
an arbitrary zero), each scored against the original labels. A verdict at a time t of the altered file
counts on the first original row at or after t (a coarser step's mean is stamped at the end of
its interval, so no verdict is credited before its data had arrived).
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuropilot_pipeline.core.detectors import DetectorConfig, detect_dataframe  # noqa: E402
from neuropilot_pipeline.core.nab import normalised, score_file  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "nab"


def nab_files(data: Path) -> Iterator[tuple[str, pd.DataFrame, list]]:
    """(name, rows, labelled windows) for every file in the labels, in name order."""
    windows = json.loads((data / "labels" / "combined_windows.json").read_text())
    for name in sorted(windows):
        yield name, pd.read_csv(data / "data" / name), windows[name]


def detect_ours(df: pd.DataFrame, config: DetectorConfig = DetectorConfig()) -> tuple[np.ndarray, float]:
    """`neuropilot detect`'s verdicts on one NAB file (the code path of `detect_csv`) and the seconds taken."""
    t0 = time.perf_counter()
    out = detect_dataframe(df, "timestamp", "value", config)
    return out["is_anomaly"].to_numpy(), time.perf_counter() - t0


def nab_summary(total: dict) -> str:
    return (f"{total['score']:.1f}  (windows detected {total['detected']}/{total['windows']}, "
            f"false positives {total['false_positives']})")


def _coarser(minutes: int):
    def means(df: pd.DataFrame) -> pd.DataFrame:
        series = df.set_index("timestamp")["value"]
        out = series.resample(f"{minutes}min", label="right", closed="left").mean().dropna()
        return out.rename("value").reset_index()
    return means


def _missed(fraction: float, seed: int):
    return lambda df: df.drop(df.sample(frac=fraction, random_state=seed).index)


def _clock(minutes: int):
    return lambda df: df.assign(timestamp=df["timestamp"] + pd.Timedelta(minutes=minutes))


# (label, how the file is altered, minutes its clock moved). Missed samples are drawn three
# times: one draw can move a verdict on or off a window by chance.
ALTERATIONS = [
    ("as exported", lambda df: df, 0),
    ("in units 1000x larger", lambda df: df.assign(value=df["value"] * 1000.0), 0),
    ("in units 1000x smaller", lambda df: df.assign(value=df["value"] / 1000.0), 0),
    ("clock 2 h 17 min later", _clock(137), 137),
    ("clock 9 h later", _clock(540), 540),
    ("2 % of samples missed", _missed(0.02, 1), 0),
    *[(f"10 % of samples missed (draw {k})", _missed(0.10, k), 0) for k in (1, 2, 3)],
    ("every other sample", lambda df: df.iloc[::2], 0),
    ("10-minute means", _coarser(10), 0),
    ("30-minute means", _coarser(30), 0),
    ("hourly means", _coarser(60), 0),
    ("noise of 5 % of its spread added", lambda df: df.assign(
        value=df["value"] + np.random.default_rng(1).normal(0.0, 0.05 * df["value"].std(), len(df))), 0),
    ("an arbitrary zero (value + 10x its range)",
     lambda df: df.assign(value=df["value"] + 10.0 * (df["value"].max() - df["value"].min())), 0),
]


def robustness(data: Path, config: DetectorConfig) -> None:
    files = [(name, df.assign(timestamp=pd.to_datetime(df["timestamp"])), windows)
             for name, df, windows in nab_files(data)]
    print(f"{'the NAB files, exported':44s} {'NAB':>6s} {'windows':>8s} {'FP':>4s}")
    for label, alter, shift in ALTERATIONS:
        scores = []
        for name, df, windows in files:
            altered = alter(df)
            out = detect_dataframe(altered, "timestamp", "value", config)
            at = pd.to_datetime(altered["timestamp"]) - pd.Timedelta(minutes=shift)
            rows = np.searchsorted(df["timestamp"].to_numpy(), at[out["is_anomaly"].to_numpy()].to_numpy())
            detections = np.zeros(len(df), dtype=bool)
            detections[rows[rows < len(df)]] = True
            scores.append(score_file(df["timestamp"], detections, windows))
        total = normalised(scores)
        print(f"{label:44s} {total['score']:6.1f} {total['detected']:4d}/{total['windows']:<3d} "
              f"{total['false_positives']:4d}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--robustness", action="store_true", help="the files as other exports of them would arrive")
    args = ap.parse_args()
    config = DetectorConfig()  # exactly what `neuropilot detect` and the pipeline use
    if args.robustness:
        robustness(args.data, config)
        return
    scores, points, seconds = [], 0, 0.0
    print(f"{'file':52s} {'rows':>6s} {'windows':>7s} {'hit':>4s} {'FP':>4s} {'raw':>7s} {'s':>6s}")
    for name, df, windows in nab_files(args.data):
        detections, elapsed = detect_ours(df, config)
        s = score_file(df["timestamp"], detections, windows)
        scores.append(s)
        points += len(df)
        seconds += elapsed
        print(f"{name:52s} {len(df):6d} {s.windows:7d} {s.detected:4d} {s.false_positives:4d} {s.raw:7.3f} {elapsed:6.2f}")
    print(f"\nNAB standard profile, normalised: {nab_summary(normalised(scores))}")
    print(f"speed: {seconds / points * 10_000:.3f} s per 10,000 points, {points / seconds:,.0f} points/s "
          f"({points} points, {seconds:.1f} s, one core)")


if __name__ == "__main__":
    main()
