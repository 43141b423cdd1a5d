"""The pipeline on object storage against the same pipeline on disk: time and requests per window.

    python benchmarks/object_storage.py --services 10 --days 2

Builds the same history twice (cycle.py's input: N services, each a shifted and rescaled copy
of real demand through the reference service model): once with every store on disk, once with
the warehouse, models, state and reports on an S3 bucket served by moto's S3-compatible server
on localhost (`pip install -e ".[dev]"`), through pyarrow's real S3 client. Prints, per
backend, the seconds per ops-cycle window and per training day, and on S3 the requests per
window by kind. The local server answers in about a millisecond; a real bucket in the same
region takes 10-30 ms per request, so multiply the requests by that to estimate production.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cycle  # noqa: E402  (prepare_home, use_home, run, days_from, START)

BUCKET = "neuropilot-bench"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RequestCounter(logging.Handler):
    """Counts the S3 server's requests by method (from its access log)."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        text = ANSI.sub("", record.getMessage())  # the server colours some status lines
        found = re.search(r'"(GET|PUT|HEAD|POST|DELETE) ', text)
        if found:
            method = found.group(1)
            self.counts["LIST" if method == "GET" and "list-type=" in text else method] += 1


def start_s3() -> RequestCounter:
    from moto.server import ThreadedMotoServer
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    counter = RequestCounter()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(counter)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    return counter


def run_backend(name: str, home: Path, services: list[str], days: int, counter: RequestCounter | None) -> dict:
    import dagster as dg

    cycle.prepare_home(home, services, days)
    cycle.use_home(home)
    from neuropilot_pipeline.assets.partitions import windows_of_day

    instance = dg.DagsterInstance.ephemeral()
    windows, trains, requests = [], [], collections.Counter()
    for day in cycle.days_from(cycle.START, days):
        for window in windows_of_day(day):
            before = collections.Counter(counter.counts) if counter else None
            windows.append(cycle.run("ops_cycle", window, instance)[1])
            if counter:
                requests += counter.counts - before
        trains.append(cycle.run("train_model", day, instance)[1])
    n = len(windows)
    return {"backend": name, "s_per_window": sum(windows) / n, "s_per_training_day": sum(trains) / len(trains),
            "requests_per_window": {k: round(v / n, 1) for k, v in sorted(requests.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--home", type=Path, default=Path("/tmp/neuropilot-bench/object-storage"))
    args = ap.parse_args()
    services = cycle.service_names(args.services)
    results = [run_backend("disk", args.home / "disk", services, args.days, None)]
    counter = start_s3()
    prefix = f"s3://{BUCKET}/bench"
    os.environ.update({f"NEUROPILOT_PATHS__{k.upper()}": f"{prefix}/{k}" for k in ("warehouse", "models", "state",
                                                                                    "reports")})
    results.append(run_backend("s3 (local server)", args.home / "s3", services, args.days, counter))
    print(f"\n{args.services} services, {args.days} days ({args.days * 4} windows, {args.days} training days), "
          f"{os.cpu_count()} cores")
    print(f"| backend | s / ops-cycle window | s / training day | requests / window |")
    print("| --- | ---: | ---: | --- |")
    for r in results:
        req = ", ".join(f"{k} {v:g}" for k, v in r["requests_per_window"].items()) or "-"
        print(f"| {r['backend']} | {r['s_per_window']:.2f} | {r['s_per_training_day']:.2f} | {req} |")


if __name__ == "__main__":
    main()
