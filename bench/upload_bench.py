"""Deploy speed and memory of oss_io against the local OSS server, side by side in one run.

    python bench/upload_bench.py [--files 2000] [--size 20000] [--latency-ms 20] [--big-mb 1024]

The server runs as its own process (its CPU is not the uploader's), once with added latency
per request and once without. Measured:
- a sequential oss2 `put_object` loop over the tree (the naive uploader), with latency;
- `OssClient.upload_tree` (parallel, default concurrency 16), with latency;
- the floor: the larger of ceil(files / concurrency) x latency and upload_tree with no latency;
- the redeploy of the unchanged tree: its time and how many PUTs reached the server;
- peak memory (max RSS) of a process that deploys the tree, and of one that deploys one big file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

KEY = ("bench-key-id", "bench-secret", "bench-token")
REGION = "cn-hangzhou"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: str, latency_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [sys.executable, os.path.join(ROOT, "oss_server.py"), "--root", root, "--port", str(port)]
    argv += ["--bucket", "site", "--latency-ms", str(latency_ms)]
    argv += ["--access-key-id", KEY[0], "--access-key-secret", KEY[1], "--security-token", KEY[2]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(500):
        try:
            urllib.request.urlopen(endpoint + "/_stats").read()
            return proc, endpoint
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("oss_server did not start")


def puts(endpoint: str) -> int:
    counts = json.loads(urllib.request.urlopen(endpoint + "/_stats").read())
    return counts.get("put_object", 0) + counts.get("upload_part", 0)


def make_tree(root: str, files: int, size: int) -> None:
    for i in range(files):
        folder = os.path.join(root, "assets", f"d{i % 20:02d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"chunk-{i:05d}.js"), "wb") as f:
            f.write(os.urandom(size))


def client(endpoint: str, concurrency: int = 16):  # type: ignore[no-untyped-def]
    import oss_io
    from context import Credentials

    return oss_io.OssClient(Credentials(*KEY), REGION, endpoint, concurrency=concurrency)


def sequential(endpoint: str, tree: str) -> float:
    import oss2
    from oss2.credentials import StaticCredentialsProvider

    bucket = oss2.Bucket(oss2.ProviderAuthV4(StaticCredentialsProvider(*KEY)), endpoint, "site", region=REGION)
    started = time.perf_counter()
    for folder, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                bucket.put_object("seq/" + os.path.relpath(path, tree), f)
    return time.perf_counter() - started


def timed_upload(endpoint: str, prefix: str, tree: str, manifest=None):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    plan, report = client(endpoint).upload_tree("site", prefix, tree, previous_manifest=manifest)
    return time.perf_counter() - started, plan, report


def child_upload_rss(endpoint: str, tree: str) -> tuple[float, float]:
    """Deploy `tree` in a fresh process; its (seconds, max RSS in MiB)."""
    code = (
        "import sys, time, resource; sys.path.insert(0, sys.argv[3]);"
        "sys.argv = sys.argv;"
        "from bench.upload_bench import client;"
        "t = time.perf_counter(); client(sys.argv[1]).upload_tree('site', 'mem/', sys.argv[2]);"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code, endpoint, tree, ROOT], capture_output=True, text=True, check=True)
    seconds, rss = out.stdout.split()
    return float(seconds), float(rss)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the one-file memory test (0 skips it)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="fcbuild-upload-bench-")
    tree = os.path.join(work, "tree")
    make_tree(tree, args.files, args.size)
    slow, slow_ep = start_server(os.path.join(work, "slow"), args.latency_ms)
    fast, fast_ep = start_server(os.path.join(work, "fast"), 0)
    try:
        t_seq = sequential(slow_ep, tree)
        t_par, plan, report = timed_upload(slow_ep, "par/", tree)
        t_fast, _, _ = timed_upload(fast_ep, "par/", tree)
        before = puts(slow_ep)
        t_again, _, again = timed_upload(slow_ep, "par/", tree, plan.manifest)
        puts_again = puts(slow_ep) - before
        _, rss_tree = child_upload_rss(fast_ep, tree)
        big_line = ""
        if args.big_mb:
            big = os.path.join(work, "big")
            os.makedirs(big)
            block = os.urandom(1 << 20)
            with open(os.path.join(big, "big.bin"), "wb") as f:
                for i in range(args.big_mb):
                    f.write(block[i % 7 :] + block[: i % 7])
            t_big, rss_big = child_upload_rss(fast_ep, big)
            big_line = f"one {args.big_mb} MiB file: {t_big:.1f} s, peak RSS {rss_big:.0f} MiB"
    finally:
        for proc in (slow, fast):
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    latency_floor = math.ceil(args.files / args.concurrency) * args.latency_ms / 1000
    floor = max(latency_floor, t_fast)
    mib = args.files * args.size / 2**20
    print(f"{args.files} files of {args.size} bytes ({mib:.0f} MiB), {args.latency_ms:.0f} ms added per request:")
    print(f"  sequential oss2 put_object loop     {t_seq:7.2f} s")
    print(f"  upload_tree, concurrency {args.concurrency:<3d}       {t_par:7.2f} s   {t_seq / t_par:5.1f}x faster")
    print(f"  floor max({latency_floor:.2f} s latency, {t_fast:.2f} s no-latency run) {floor:.2f} s; "
          f"upload_tree is {t_par / floor:.2f}x the floor")  # fmt: skip
    print(f"  redeploy of the unchanged tree      {t_again:7.2f} s   {puts_again} PUTs, "
          f"{t_par / t_again:.0f}x faster than the first deploy")  # fmt: skip
    print(f"  retries during the deploy           {report.retries}; skipped on redeploy {again.skipped}")
    print(f"peak RSS of a process deploying the tree: {rss_tree:.0f} MiB")
    if big_line:
        print(big_line)
    print(f"(this process: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
