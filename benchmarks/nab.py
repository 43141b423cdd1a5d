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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuropilot_pipeline.core.detectors import DetectorConfig, detect_dataframe  # noqa: E402
from neuropilot_pipeline.core.nab import normalised, score_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "nab")
    args = ap.parse_args()
    windows = json.loads((args.data / "labels" / "combined_windows.json").read_text())
    config = DetectorConfig()  # exactly what `neuropilot detect` and the pipeline use
    scores, points, seconds = [], 0, 0.0
    print(f"{'file':52s} {'rows':>6s} {'windows':>7s} {'hit':>4s} {'FP':>4s} {'raw':>7s} {'s':>6s}")
    for name in sorted(windows):
        df = pd.read_csv(args.data / "data" / name)
        t0 = time.perf_counter()
        out = detect_dataframe(df, "timestamp", "value", config)
        elapsed = time.perf_counter() - t0
        s = score_file(df["timestamp"], out["is_anomaly"].to_numpy(), windows[name])
        scores.append(s)
        points += len(df)
        seconds += elapsed
        print(f"{name:52s} {len(df):6d} {s.windows:7d} {s.detected:4d} {s.false_positives:4d} {s.raw:7.3f} {elapsed:6.2f}")
    total = normalised(scores)
    print(f"\nNAB standard profile, normalised: {total['score']:.1f}  "
          f"(windows detected {total['detected']}/{total['windows']}, false positives {total['false_positives']})")
    print(f"speed: {seconds / points * 10_000:.3f} s per 10,000 points, {points / seconds:,.0f} points/s "
          f"({points} points, {seconds:.1f} s, one core)")


if __name__ == "__main__":
    main()
