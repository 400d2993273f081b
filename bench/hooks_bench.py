"""What push to deploy costs, on a warm instance (the runtime in FC_RUNTIME_BIN, else from source):

    python bench/hooks_bench.py [--deliveries 200] [--builds 3]

1. Webhook to 202: signed GitHub push deliveries, each a new delivery id, answered after the
   delivery was recorded in OSS and the asynchronous invocation taken by the local FC stand-in
   (which here hands it to a sink, so no build runs); p50 and p99 over --deliveries.
2. Push to live: the demo site's push delivered, until the stand-in's invocation of the runtime has
   deployed it, against the same build request sent as a direct /invoke; medians of --builds each,
   taken in turns after one warm-up build (the same commit each time: both deploy nothing new).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import hooks  # noqa: E402
from tests import hook_payloads as hp  # noqa: E402
from tests.test_e2e_hooks import GITHUB_SECRET, World  # noqa: E402


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--builds", type=int, default=3)
    args = parser.parse_args()
    world = World(Path(tempfile.mkdtemp(prefix="fcbuild-hooks-bench-")))
    try:
        body = hp.body("github-push", clone_url=world.web_url, sha=world.main_sha)
        # a warm instance: one webhook and one build done before anything is timed
        world.queued(world.deliver("/hooks/github", body, hp.github("push", body, GITHUB_SECRET)))
        runtime = world.fc.runtime
        sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        world.fc.runtime = f"127.0.0.1:{sink.server_address[1]}"
        times = []
        for _ in range(args.deliveries):
            headers = hp.github("push", body, GITHUB_SECRET, delivery=str(uuid.uuid4()))
            started = time.perf_counter()
            resp = world.deliver("/hooks/github", body, headers)
            times.append(time.perf_counter() - started)
            assert resp.status == 202, resp.body
        world.fc.runtime = runtime
        sink.shutdown()
        print(
            f"webhook to 202: p50 {pct(times, 0.5) * 1000:.1f} ms, p99 {pct(times, 0.99) * 1000:.1f} ms ({len(times)})"
        )

        repo = world_repo(world)
        request = hooks.build_request(
            repo, hooks.plan(repo, hooks.Event("push", world.web_url, "main", sha=world.main_sha))
        )
        hook_s, direct_s = [], []
        for _ in range(args.builds):
            started = time.perf_counter()
            world.queued(world.deliver("/hooks/github", body, hp.github("push", body, GITHUB_SECRET)))
            hook_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            resp = world.rt.invoke(request, timeout=600)
            direct_s.append(time.perf_counter() - started)
            assert resp.status == 200, resp.body
        hook, direct = statistics.median(hook_s), statistics.median(direct_s)
        print(f"push to live {hook:.2f} s, direct invoke {direct:.2f} s: {hook / direct:.2f}x ({args.builds} each)")
    finally:
        world.close()
    return 0


def world_repo(world: World) -> hooks.Repo:
    return next(r for r in hooks.parse_repos(json.dumps(_repos(world))) if r.id == "acme/web")


def _repos(world: World) -> list[dict]:
    return [{"url": world.web_url, "provider": "github", "id": "acme/web", "target": "oss://site/web/"}]


if __name__ == "__main__":
    sys.exit(main())
