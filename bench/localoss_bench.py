"""The local OSS server's throughput, against the single-file server it replaced, in one run.

    python bench/localoss_bench.py [--files 2000] [--size 20000] [--gib 1] [--baseline REV]

Each server runs in a process of its own on a fresh root: `python -m localoss`, and the
`oss_server.py` of git revision REV (default: the last one that had it). Measured with oss2
through fcbuild's `oss_io` client, 16 requests at once: PUTs of `--files` objects of `--size`
bytes, then one streamed GET of a `--gib` GiB object (CRC64 checked by the client).
"""

from __future__ import annotations

import argparse
import os
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
BASELINE = "70612f9"  # the last revision with the single-file oss_server.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], root: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = argv + ["--root", root, "--port", str(port), "--bucket", "site"]
    argv += ["--access-key-id", KEY[0], "--access-key-secret", KEY[1], "--security-token", KEY[2]]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=ROOT)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(1000):
        try:
            urllib.request.urlopen(endpoint + "/_stats").read()
            return proc, endpoint
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{argv[:3]} did not start")


def measure(endpoint: str, tree: str, big: str) -> tuple[float, float]:
    import oss_io
    from context import Credentials
    from deploy_plan import scan_tree

    client = oss_io.OssClient(Credentials(*KEY), REGION, endpoint, concurrency=16)
    items = [oss_io.PutItem(f.path, os.path.join(tree, f.path), f.size, f.md5, {}) for f in scan_tree(tree)]
    started = time.perf_counter()
    client.put_files("site", items)
    puts = time.perf_counter() - started
    client.put_file("site", "big.bin", big, content_type="application/octet-stream")
    started = time.perf_counter()
    client.download_file("site", "big.bin", big + ".back")
    get = time.perf_counter() - started
    os.unlink(big + ".back")
    return puts, get


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fcbuild-localoss-bench-")
    try:
        old = os.path.join(work, "oss_server.py")
        with open(old, "wb") as f:
            f.write(
                subprocess.run(
                    ["git", "show", f"{args.baseline}:oss_server.py"], cwd=ROOT, capture_output=True, check=True
                ).stdout
            )
        tree = os.path.join(work, "tree")
        for i in range(args.files):
            path = os.path.join(tree, f"d{i % 20:02d}", f"f{i:05d}.js")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(os.urandom(args.size))
        big = os.path.join(work, "big.bin")
        block = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(int(args.gib * 1024)):
                f.write(block)
        results = {}
        for name, argv in (("localoss", [sys.executable, "-m", "localoss"]), ("oss_server.py", [sys.executable, old])):
            proc, endpoint = start(argv, os.path.join(work, f"root-{len(results)}"))
            try:
                results[name] = measure(endpoint, tree, big)
            finally:
                proc.terminate()
                proc.wait()
            shutil.rmtree(os.path.join(work, f"root-{len(results) - 1}"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    new, base = results["localoss"], results["oss_server.py"]
    mib = args.files * args.size / 2**20
    print(f"{args.files} PUTs of {args.size} bytes ({mib:.0f} MiB), 16 at once; one GET of {args.gib:g} GiB:")
    print(f"  PUTs   localoss {new[0]:6.2f} s   oss_server.py {base[0]:6.2f} s   ratio {new[0] / base[0]:.2f}")
    print(f"  GET    localoss {new[1]:6.2f} s   oss_server.py {base[1]:6.2f} s   ratio {new[1] / base[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
