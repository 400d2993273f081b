"""Deploy speed and memory against the local OSS server, side by side in one run.

    python bench/upload_bench.py [--files 2000] [--size 20000] [--latency-ms 20] [--big-mb 1024]

The server runs as its own process (its CPU is not the uploader's), once with added latency
per request and once without. The tree's files have stable (not content-hashed) names, the
worst case for a two-phase deploy: every one is switched under the lease. Measured:
- a sequential oss2 `put_object` loop over the tree (the naive uploader), with latency;
- a plain parallel upload of the tree (`OssClient.put_files`, concurrency 16) plus a manifest: what
  a single-phase deploy sends;
- the two-phase deploy (`deployer.deploy`) of the same tree, first deploy and a deploy in which
  every file changed (each live version is kept first: a server-side copy per file);
- the floor: the larger of ceil(files / concurrency) x latency and the deploy with no latency;
- the redeploy of the unchanged tree: its time and how many PUTs reached the server;
- a rollback of the whole tree to the previous release;
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
    argv = [sys.executable, "-m", "localoss", "--root", root, "--port", str(port)]
    argv += ["--bucket", "site", "--latency-ms", str(latency_ms)]
    argv += ["--access-key-id", KEY[0], "--access-key-secret", KEY[1], "--security-token", KEY[2]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=ROOT)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(500):
        try:
            urllib.request.urlopen(endpoint + "/_stats").read()
            return proc, endpoint
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("the local OSS server did not start")


def puts(endpoint: str) -> int:
    counts = json.loads(urllib.request.urlopen(endpoint + "/_stats").read())
    return counts.get("put_object", 0) + counts.get("upload_part", 0)


def make_site(root: str, files: int, size: int, version: int) -> None:
    """A site as a bundler writes one: content-hashed chunks and 5% pages at stable names."""
    import hashlib

    shutil.rmtree(root, ignore_errors=True)
    pages = max(1, files // 20)
    for i in range(files):
        data = os.urandom(size)
        if i < pages:
            rel = "index.html" if i == 0 else f"pages/p{i:04d}.html"
        else:
            rel = f"assets/chunk{i:05d}-{hashlib.sha256(data).hexdigest()[:8]}.js"
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    del version


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


def deploy(endpoint: str, prefix: str, tree: str, release: str):  # type: ignore[no-untyped-def]
    """A two-phase deploy of `tree`; (seconds, report)."""
    import logging

    import deployer
    from deploy_plan import scan_tree

    started = time.perf_counter()
    c = client(endpoint)
    report = deployer.deploy(
        c,
        deployer.Target("site", prefix),
        tree,
        scan_tree(tree),
        claim=deployer.Claim(release, time.time()),
        record={},
        cache_rules=(),
        deadline=time.monotonic() + 3600,
        log=logging.getLogger("bench"),
    )
    report.peak_concurrency = c.peak_concurrency
    return time.perf_counter() - started, report


def plain_upload(endpoint: str, prefix: str, tree: str) -> float:
    """What a single-phase deploy sends: every file in parallel, then one manifest."""
    import oss_io
    from deploy_plan import content_type_for, scan_tree

    started = time.perf_counter()
    files = scan_tree(tree)
    c = client(endpoint)
    items = [
        oss_io.PutItem(
            prefix + f.path, os.path.join(tree, f.path), f.size, f.md5, {"Content-Type": content_type_for(f.path)}
        )
        for f in files
    ]
    c.put_files("site", items)
    c.put_json("site", prefix + ".fcbuild/manifest.json", {"files": {f.path: f.md5 for f in files}})
    return time.perf_counter() - started


def rollback(endpoint: str, prefix: str) -> float:
    import logging

    import deployer

    started = time.perf_counter()
    deployer.rollback(
        client(endpoint),
        deployer.Target("site", prefix),
        "previous",
        claim=deployer.Claim("rollback", time.time()),
        deadline=time.monotonic() + 3600,
        log=logging.getLogger("bench"),
    )
    return time.perf_counter() - started


def rewrite(tree: str) -> None:
    """Change every file of the tree (a release in which everything changed)."""
    for folder, _, names in os.walk(tree):
        for name in names:
            with open(os.path.join(folder, name), "r+b") as f:
                f.write(os.urandom(16))


def child_upload_rss(endpoint: str, tree: str) -> tuple[float, float]:
    """Deploy `tree` in a fresh process; its (seconds, max RSS in MiB)."""
    code = (
        "import sys, time, resource; sys.path.insert(0, sys.argv[3]);"
        "from bench.upload_bench import deploy;"
        "t = time.perf_counter(); deploy(sys.argv[1], 'mem/', sys.argv[2], 'mem');"
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
        t_plain = plain_upload(slow_ep, "plain/", tree)
        t_par, report = deploy(slow_ep, "par/", tree, "r1")
        t_fast, _ = deploy(fast_ep, "par/", tree, "r1")
        before = puts(slow_ep)
        t_again, again = deploy(slow_ep, "par/", tree, "r2")
        puts_again = puts(slow_ep) - before
        rewrite(tree)
        t_changed, changed = deploy(slow_ep, "par/", tree, "r3")
        t_rollback = rollback(slow_ep, "par/")
        site = os.path.join(work, "site")
        make_site(site, args.files, args.size, 1)
        deploy(slow_ep, "site/", site, "s1")
        make_site(site, args.files, args.size, 2)
        deploy(slow_ep, "site/", site, "s2")
        t_site_rollback = rollback(slow_ep, "site/")
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

    used = max(report.peak_concurrency, args.concurrency)  # the concurrency the deploy rose to
    latency_floor = math.ceil(args.files / used) * args.latency_ms / 1000
    floor = max(latency_floor, t_fast)
    mib = args.files * args.size / 2**20
    print(f"{args.files} files of {args.size} bytes ({mib:.0f} MiB), {args.latency_ms:.0f} ms added per request:")
    print(f"  sequential oss2 put_object loop     {t_seq:7.2f} s")
    print(f"  plain parallel upload + manifest    {t_plain:7.2f} s   {t_seq / t_plain:5.1f}x faster")
    print(f"  two-phase deploy, first             {t_par:7.2f} s   {t_par / t_plain:5.2f}x the plain upload, "
          f"{t_seq / t_par:.1f}x faster than the loop")  # fmt: skip
    print(f"  two-phase deploy, every file changed {t_changed:6.2f} s   {t_changed / t_plain:5.2f}x the plain upload "
          f"({changed.kept} earlier versions kept)")  # fmt: skip
    print(f"  floor max({latency_floor:.2f} s latency at {used} in flight, {t_fast:.2f} s no-latency run) "
          f"{floor:.2f} s; the first deploy is {t_par / floor:.2f}x the floor")  # fmt: skip
    print(f"  redeploy of the unchanged tree      {t_again:7.2f} s   {puts_again} PUTs, "
          f"{t_par / t_again:.0f}x faster than the first deploy")  # fmt: skip
    print(f"  rollback, every file at a stable name {t_rollback:6.2f} s   (each: keep the live one, copy one back)")
    print(f"  rollback of a {args.files}-file site (95% hashed, every file changed) {t_site_rollback:.2f} s")
    print(f"  retries during the deploy           {report.retries}; skipped on redeploy {again.skipped}")
    print(f"peak RSS of a process deploying the tree: {rss_tree:.0f} MiB")
    if big_line:
        print(big_line)
    print(f"(this process: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
