"""Policy backtest benchmark: SLA and cost of each policy on real demand traces.

    python benchmarks/backtest.py [--peak-instances 40] [--traces PATH ...]

Replays the WorldCup98 trace (and, as traces the policy was not designed on, NAB's Twitter
mention volumes, 5-minute samples spread over minutes) through the reference service model
(specs/backtest-model.md) and prints: policy, SLA, cost, cost/oracle, saving vs fixed 80/30,
seconds.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuropilot_pipeline.core.backtest import load_trace, run_backtest  # noqa: E402
from neuropilot_pipeline.core.policy import make_policy  # noqa: E402
from neuropilot_pipeline.core.service_model import Thresholds  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
WC98 = SHARED / "traces" / "wc98_requests_per_minute_1998-06-10_to_06-30.csv"
BUNDLED = ROOT / "neuropilot_pipeline" / "data" / "traces" / WC98.name
EXTRA = sorted((SHARED / "nab" / "data" / "realTweets").glob("*.csv"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peak-instances", type=float, default=40)
    ap.add_argument("--traces", nargs="*", type=Path)
    args = ap.parse_args()
    traces = args.traces or [WC98 if WC98.exists() else BUNDLED, *EXTRA]
    print(f"{'trace':34s} {'policy':14s} {'SLA %':>9s} {'cost $':>9s} {'cost/oracle':>11s} {'vs 80/30':>9s} {'s':>6s}")
    for path in traces:
        trace = load_trace(path)
        # "fixed" keeps whatever it starts with; the learned policy starts from 80/30.
        runs = [("fixed 80/30", "fixed", Thresholds(80, 30, 250, 2, 200)),
                ("fixed 80/60", "fixed", Thresholds(80, 60, 250, 2, 200)),
                ("learned", "learned", Thresholds(80, 30, 250, 2, 200))]
        for label, policy, start in runs:
            t0 = time.time()
            s = run_backtest(trace.requests, make_policy(policy), peak_instances=args.peak_instances,
                             start_thresholds=start).summary
            base = s["fixed_baseline"]["cost"]
            print(f"{path.name[:34]:34s} {label:14s} {s['sla']:9.3f} {s['cost']:9.2f} {s['cost_over_oracle']:11.3f} "
                  f"{100 * (1 - s['cost'] / base):8.1f}% {time.time() - t0:6.1f}", flush=True)


if __name__ == "__main__":
    main()
