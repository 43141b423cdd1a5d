"""NAB benchmark: `neuropilot detect`'s verdicts on the NAB subset, scored with NAB's standard profile.

    python benchmarks/nab.py [--data ../shared/data/nab]

Prints a row per file, then the normalised score (null 0, perfect 100), windows detected,
false positives, seconds per 10,000 points and points per second (one process, one core).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    config = DetectorConfig()  # exactly what `neuropilot detect` and the pipeline use
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
