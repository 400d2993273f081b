"""fcbuild's HTTP face, measured: keep-alive latency, a burst of clients, and start-up.

    python bench/runtime_bench.py [--requests 400] [--starts 10]

1. A rejected /invoke (malformed JSON) over one kept-alive connection: p50/p90 latency, beside a
   plain ThreadingHTTPServer handler (send_response/send_header/end_headers, then wfile.write),
   which writes headers and body separately and meets the client's delayed ACK.
2. 64 clients at once, each with a new connection: how many got an answer.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.runtime_proc import start_runtime  # noqa: E402


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

    print("exec to first answer: python bench/startup_bench.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
