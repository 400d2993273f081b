"""fcbuild's HTTP face, measured: keep-alive latency, a burst of clients, and start-up.

    python bench/runtime_bench.py [--requests 400] [--starts 10]

1. A rejected /invoke (malformed JSON) over one kept-alive connection: p50/p90 latency, beside a
   plain ThreadingHTTPServer handler (send_response/send_header/end_headers, then wfile.write),
   which writes headers and body separately and meets the client's delayed ACK.
2. 64 clients at once, each with a new connection: how many got an answer.
3. Exec to the first answered request (`GET /health`), median
   of several starts, for `python fc_runtime.py` and for FC_RUNTIME_BIN when set.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.runtime_proc import runtime_command, start_runtime  # noqa: E402


class _PlainHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"errorType": "InvalidRequest", "errorMessage": "malformed JSON"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-fc-status", "404")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def keepalive_latencies(port: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for i in range(n + 20):
        t = time.perf_counter()
        conn.request("POST", "/invoke", body=b"{", headers={"x-fc-request-id": f"b-{i}"})
        resp = conn.getresponse()
        resp.read()
        if i >= 20:  # warm-up excluded
            times.append(time.perf_counter() - t)
        assert resp.status == 404
    conn.close()
    return times


def burst(port: int, clients: int) -> tuple[int, int]:
    barrier = threading.Barrier(clients)

    def one(i: int) -> bool:
        barrier.wait()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/invoke", body=b"[]", headers={"x-fc-request-id": f"burst-{i}"})
            ok = conn.getresponse().status == 404
            conn.close()
            return ok
        except OSError:
            return False

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(clients)))
    return sum(results), clients


def start_to_first_answer(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FC_", "FCBUILD_", "ALIBABA_CLOUD_"))}
        env["FCBUILD_WORKSPACE_ROOT"] = tempfile.mkdtemp(prefix="fcbuild-bench-")
        t = time.perf_counter()
        proc = subprocess.Popen(
            argv + [str(port), "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                conn.getresponse().read()
                break
            except OSError:
                time.sleep(0.001)
        times.append(time.perf_counter() - t)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"  {argv[-1]} pid {proc.pid} did not exit within 10 s of SIGTERM", file=sys.stderr)
            proc.kill()
            raise
    return times


def ms(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args()

    rt = start_runtime()
    plain = ThreadingHTTPServer(("127.0.0.1", 0), _PlainHandler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        ours = keepalive_latencies(rt.port, args.requests)
        base = keepalive_latencies(plain.server_address[1], min(args.requests, 100))
        got, total = burst(rt.port, 64)
    finally:
        rt.stop()
        plain.shutdown()
    print(f"rejected /invoke over keep-alive, {len(ours)} requests:")
    print(f"  fcbuild                         p50 {ms(ours, 0.5):6.2f} ms  p90 {ms(ours, 0.9):6.2f} ms")
    print(f"  plain ThreadingHTTPServer       p50 {ms(base, 0.5):6.2f} ms  p90 {ms(base, 0.9):6.2f} ms")
    print(f"  ratio (plain / fcbuild, p50)    {ms(base, 0.5) / ms(ours, 0.5):.0f}x")
    print(f"burst of 64 concurrent new connections: {got}/{total} answered")

    targets = [("python fc_runtime.py", runtime_command())]
    if os.environ.get("FC_RUNTIME_BIN"):
        targets = [("python fc_runtime.py", [sys.executable, os.path.join(ROOT, "fc_runtime.py")])] + [
            (os.environ["FC_RUNTIME_BIN"], [os.path.abspath(os.environ["FC_RUNTIME_BIN"])])
        ]
    floor = [sys.executable, "-c", _FLOOR]
    targets.append(("stdlib-only server (floor)", floor))
    print(f"exec to first answered request, median of {args.starts}:")
    for name, argv in targets:
        times = start_to_first_answer(argv, args.starts)
        print(f"  {name:32s} {statistics.median(times) * 1000:6.0f} ms")
    return 0


# A ThreadingHTTPServer that answers /health and nothing else: what start-up costs with no imports of ours.
_FLOOR = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer((sys.argv[3], int(sys.argv[1])), H).serve_forever()
"""

if __name__ == "__main__":
    sys.exit(main())
