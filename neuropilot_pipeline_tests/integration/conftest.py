"""A real Prometheus (Debian's package) serving a TSDB built from the simulated service's
telemetry (WorldCup98 demand through the reference model), and a small fault proxy in front
of it for the failures real monitoring produces."""

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuropilot_pipeline.core.service_model import FIXED_BASELINE
from neuropilot_pipeline.core.telemetry import METRIC_COLUMNS, ServiceProfile, SimulatedService, load_demand_trace

DAY = pd.Timestamp("2026-11-01", tz="UTC")
SERVICES = ("web", "api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_frame() -> pd.DataFrame:
    frames = []
    for i, service in enumerate(SERVICES):
        sim = SimulatedService(ServiceProfile.for_service(service, 40, len(load_demand_trace()), i), DAY)
        frame, _ = sim.window(DAY, 1440, FIXED_BASELINE, None)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_openmetrics(frame: pd.DataFrame, path: Path) -> None:
    lines = []
    for metric in METRIC_COLUMNS:
        lines.append(f"# TYPE np_{metric} gauge")
        for service, g in frame.groupby("service"):
            stamps = (g["ts"].astype("int64") // 10**9 if g["ts"].dt.unit == "ns" else
                      g["ts"].dt.as_unit("s").astype("int64")).to_numpy()
            values = g[metric].to_numpy()
            # Rates, counts and cost are exported per instance (two halves) to test the sum.
            instances = (("i-1", 0.5), ("i-2", 0.5)) if metric in ("request_rate_per_s", "instance_count", "cost_usd") \
                else (("i-1", 1.0),)
            for instance, share in instances:
                for t, v in zip(stamps, values):
                    lines.append(f'np_{metric}{{service="{service}",instance="{instance}"}} {float(v * share)!r} {int(t)}')
    # A request counter per service; web's process restarts at 03:00 (the counter resets).
    lines.append("# TYPE np_requests counter")
    for service, g in frame.groupby("service"):
        total = 0.0
        for k, (t, rate) in enumerate(zip(g["ts"].dt.as_unit("s").astype("int64"), g["request_rate_per_s"])):
            total = 0.0 if (service == "web" and k == 180) else total + float(rate) * 60
            lines.append(f'np_requests_total{{service="{service}",instance="i-1"}} {total!r} {int(t)}')
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory):
    if not shutil.which("prometheus") or not shutil.which("promtool"):
        pytest.fail("Debian's prometheus package is required (apt-get install prometheus); .ci/run installs it")
    root = tmp_path_factory.mktemp("prometheus")
    frame = source_frame()
    write_openmetrics(frame, root / "data.om")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(root / "data.om"), str(root / "tsdb")],
                   check=True, capture_output=True)
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={root / 'prometheus.yml'}",
                             f"--storage.tsdb.path={root / 'tsdb'}", "--storage.tsdb.retention.time=30y",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(root / "prometheus.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("prometheus did not become ready: " + (root / "prometheus.log").read_text()[-2000:])
    yield {"url": url, "frame": frame}
    proc.terminate()
    proc.wait(timeout=30)


class FaultProxy(http.server.ThreadingHTTPServer):
    """Forwards to Prometheus, or misbehaves as told: `mode` in pass, token, fail_then_pass, hang, html,
    malformed, truncated, wrong_type, huge, huge_undeclared, or transform (forward, then pass the JSON
    body through `transform(path, body) -> body`)."""

    daemon_threads = True

    def __init__(self, upstream: str):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.mode, self.token, self.failures_left, self.requests = upstream, "pass", None, 0, []
        self.uid = "prom-uid"
        self.transform = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv: FaultProxy = self.server
        srv.requests.append(self.path)
        if srv.mode == "grafana":
            # Grafana's data-source proxy: /api/datasources/proxy/uid/<uid>/<the data source's API>,
            # authenticated with a service-account token.
            prefix = f"/api/datasources/proxy/uid/{srv.uid}"
            if self.headers.get("Authorization") != f"Bearer {srv.token}":
                return self._send(401, b'{"message":"invalid API key"}', "application/json")
            if not self.path.startswith(prefix + "/"):
                return self._send(404, b'{"message":"data source not found"}', "application/json")
            self.path = self.path[len(prefix):]
        elif srv.mode == "token" and self.headers.get("Authorization") != f"Bearer {srv.token}":
            return self._send(401, b'{"status":"error","error":"unauthorized"}', "application/json")
        if srv.mode == "fail_then_pass" and srv.failures_left > 0:
            srv.failures_left -= 1
            return self._send(503, b"Service Unavailable", "text/plain")
        if srv.mode == "hang":
            time.sleep(3)
            return self._send(504, b"", "text/plain")
        if srv.mode == "html":
            return self._send(200, b"<html><body>Login</body></html>", "text/html")
        if srv.mode == "malformed":
            return self._send(200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":', "application/json")
        if srv.mode == "wrong_type":
            return self._send(200, bytes(range(256)) * 4, "application/octet-stream")
        if srv.mode == "truncated":
            # Promise 10,000 bytes, send 100, hang up: what a proxy cut mid-response looks like.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "10000")
            self.end_headers()
            self.wfile.write(b'{"status":"success","data":{"resultType":"matrix","result":[' + b" " * 60)
            self.wfile.flush()
            self.close_connection = True
            return None
        if srv.mode in ("huge", "huge_undeclared"):
            body = b'{"status":"success","data":{"resultType":"matrix","result":[' + b'{"metric":{},"values":[]},' * 400_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if srv.mode == "huge":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
            return None
        try:
            with urllib.request.urlopen(srv.upstream + self.path, timeout=30) as resp:
                body = resp.read()
                if srv.mode == "transform" and srv.transform is not None:
                    body = json.dumps(srv.transform(self.path, json.loads(body))).encode()
                return self._send(resp.status, body, resp.headers.get("Content-Type"))
        except urllib.error.HTTPError as err:
            return self._send(err.code, err.read(), err.headers.get("Content-Type"))

    def _send(self, code, body, ctype):
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype or "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def proxy(prometheus):
    server = FaultProxy(prometheus["url"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
