"""What the walls around a build cost (run as root, as FC runs the runtime).

    python bench/walls_bench.py [--invokes 15] [--rounds 200]

1. The door: for a connection from this host, the look-up of its socket's owner in /proc/net/tcp
   and the search of the runtime's descendants for it, as the runtime does once per connection;
   median over --rounds, with no descendants and with 200 (a busy build).
2. The limits: starting a step's process with the limits set from inside it (a preexec function,
   which makes subprocess fork instead of vfork) against the same start without, from a process of
   the runtime's size; median over --rounds.
3. The output scan: scan_tree (no recursion, bounded) against a plain os.walk with the same
   hashing, on 2,000 files of 20 KB; median of 9.
4. End to end: the tiny project built --invokes times on one instance through the real runtime:
   the median invoke and the median isolation time, the figure the README gives before the walls.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import oss2  # noqa: E402

import peer  # noqa: E402
from bench.isolation_bench import ACCOUNT, HEADERS  # noqa: E402
from deploy_plan import scan_tree  # noqa: E402
from localoss import LocalOss  # noqa: E402
from tests.archives import FIXTURES, pack_tar  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def door(rounds: int) -> list[float]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(rounds)
    times = []
    for _ in range(rounds):
        client = socket.create_connection(server.getsockname())
        conn, addr = server.accept()
        started = time.perf_counter()
        who = peer.identify(addr, conn.getsockname())
        peer.held_by_descendant(who.inode)
        times.append(time.perf_counter() - started)
        conn.close()
        client.close()
    server.close()
    return times


def spawn(rounds: int, limited: bool) -> list[float]:
    limits = [(resource.RLIMIT_NOFILE, 65536), (resource.RLIMIT_NPROC, 512)]

    def limit() -> None:
        for which, value in limits:
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(["true"], preexec_fn=limit if limited else None, check=True)
        times.append(time.perf_counter() - started)
    return times


def plain_scan(root: str) -> int:
    count = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                hashlib.md5(f.read()).hexdigest()
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invokes", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: builds run as their own users only then")
    work = tempfile.mkdtemp(prefix="fcbuild-walls-bench-")
    ballast = bytearray(60 * 2**20)  # the runtime's size, about, for the fork
    ballast[::4096] = b"x" * len(ballast[::4096])

    idle = door(args.rounds)
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(200)]
    try:
        busy = door(args.rounds)
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    plain_spawn, limited_spawn = [], []
    for _ in range(4):  # in turns: the machine's load moves
        plain_spawn += spawn(args.rounds // 4, False)
        limited_spawn += spawn(args.rounds // 4, True)

    tree = os.path.join(work, "out")
    for i in range(2000):
        folder = os.path.join(tree, f"d{i % 40}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"f{i}.js"), "wb") as f:
            f.write(os.urandom(20_000))
    new_scan, old_scan = [], []
    for _ in range(9):
        started = time.perf_counter()
        scan_tree(tree, max_files=100_000, max_bytes=5 * 2**30)
        new_scan.append(time.perf_counter() - started)
        started = time.perf_counter()
        plain_scan(tree)
        old_scan.append(time.perf_counter() - started)

    with LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[ACCOUNT]) as oss:
        src = oss2.Bucket(oss2.StsAuth(*HEADERS.values(), auth_version="v4"), oss.endpoint, "src", region="cn-hangzhou")
        src.put_object("tiny.tar.gz", pack_tar(os.path.join(FIXTURES, "tiny")))
        rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint}, workdir=os.path.join(work, "instance"))
        try:
            event = {"source": "oss://src/tiny.tar.gz", "target": "oss://site/tiny/"}
            results = []
            for _ in range(args.invokes):
                resp = rt.invoke(event, headers=HEADERS, timeout=300, fresh=True)  # a new connection each time
                if resp.status != 200:
                    raise SystemExit(f"build failed: {resp.body.decode()}")
                results.append(resp.json())
        finally:
            rt.stop(timeout=120)
    shutil.rmtree(work, ignore_errors=True)
    del ballast

    print(f"the door, per connection from this host (median of {args.rounds}):")
    print(f"  no descendants           {median_ms(idle):7.3f} ms")
    print(f"  200 descendants          {median_ms(busy):7.3f} ms")
    print(f"starting a step's process from a 60 MB process (median of {len(plain_spawn)} each, in turns):")
    print(f"  without limits           {median_ms(plain_spawn):7.3f} ms")
    print(
        f"  with limits (preexec)    {median_ms(limited_spawn):7.3f} ms"
        f"   (+{median_ms(limited_spawn) - median_ms(plain_spawn):.3f} ms per step)"
    )
    print("the output scan, 2,000 files of 20 KB (median of 9):")
    print(f"  os.walk and MD5          {median_ms(old_scan):7.1f} ms")
    ratio = statistics.median(new_scan) / statistics.median(old_scan)
    print(f"  scan_tree                {median_ms(new_scan):7.1f} ms   ({ratio:.2f}x)")
    iso = statistics.median(r["isolation"]["seconds"] for r in results)
    whole = statistics.median(r["durationSeconds"] for r in results)
    print(f"the tiny project, {args.invokes} invokes on one instance, each on a new connection (medians):")
    print(f"  isolation per invoke     {iso * 1000:7.1f} ms")
    print(f"  whole invoke             {whole * 1000:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
