"""What build isolation costs, end to end through fcbuild (run as root, as FC runs it).

    python bench/isolation_bench.py [--invokes 15] [--app bench/apps/vite-react]

1. The tiny test project, built --invokes times on one instance: the median of the time each
   invoke spent on isolation (handing the workspace to the build user, ending every process a step
   left, removing its files from shared temp folders, putting the site's caches back), against the
   median invoke.
2. A realistic app (127 MB of node_modules) rebuilt unchanged on a warm instance: the cache step's
   share of the invoke, and the isolation time there.
3. What a rebuild pays when it lands on another build user than the one that made its warm tree
   (FCBUILD_MAX_BUILDS above 1): handing that tree over (lchown of every entry), measured directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import oss2  # noqa: E402

import sandbox  # noqa: E402
from localoss import Account, LocalOss  # noqa: E402
from tests.archives import FIXTURES, pack_tar  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402

ACCOUNT = Account("STS.bench", "bench-secret", "bench-token")
HEADERS = {
    "x-fc-access-key-id": ACCOUNT.access_key_id,
    "x-fc-access-key-secret": ACCOUNT.access_key_secret,
    "x-fc-security-token": ACCOUNT.security_token,
}


def build(rt, source: str, prefix: str) -> dict:  # type: ignore[no-untyped-def]
    resp = rt.invoke({"source": source, "target": f"oss://site/{prefix}"}, headers=HEADERS, timeout=900, fresh=True)
    if resp.status != 200:
        raise SystemExit(f"build failed: {resp.body.decode()}")
    return resp.json()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invokes", type=int, default=15)
    parser.add_argument("--app", default=os.path.join(ROOT, "bench", "apps", "vite-react"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: builds run as their own users only then")
    work = tempfile.mkdtemp(prefix="fcbuild-isolation-bench-")
    with LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[ACCOUNT]) as oss:
        src = oss2.Bucket(oss2.StsAuth(*HEADERS.values(), auth_version="v4"), oss.endpoint, "src", region="cn-hangzhou")
        src.put_object("tiny.tar.gz", pack_tar(os.path.join(FIXTURES, "tiny")))
        src.put_object("app.tar.gz", pack_tar(os.path.abspath(args.app)))
        rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint}, workdir=os.path.join(work, "instance"))
        try:
            tiny = [build(rt, "oss://src/tiny.tar.gz", "tiny/") for _ in range(args.invokes)]
            first = build(rt, "oss://src/app.tar.gz", "app/")
            # the first build's OSS save runs in the background: let it finish before the warm rebuilds
            deadline = time.monotonic() + 300
            site = oss2.Bucket(
                oss2.StsAuth(*HEADERS.values(), auth_version="v4"), oss.endpoint, "site", region="cn-hangzhou"
            )
            while not list(oss2.ObjectIteratorV2(site, prefix="app/.fcbuild/deps/")) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            warm = [build(rt, "oss://src/app.tar.gz", "app/") for _ in range(3)]
        finally:
            rt.stop(timeout=120)
        deps = os.path.join(rt.workspace_root, "cache", "deps")
        modules = next(
            os.path.join(deps, d, "node_modules")
            for d in os.listdir(deps)
            if os.path.isdir(os.path.join(deps, d, "node_modules"))
        )
        copy = os.path.join(work, "tree")
        shutil.copytree(modules, copy, symlinks=True)
        owner = os.lstat(copy).st_uid
        started = time.perf_counter()
        changed = sandbox.chown_tree(copy, owner + 1, owner + 1, only_from={owner})
        chown_s = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)

    iso = statistics.median(r["isolation"]["seconds"] for r in tiny)
    total = statistics.median(r["durationSeconds"] for r in tiny)
    print(f"tiny project, {args.invokes} invokes on one instance (medians):")
    print(f"  isolation per invoke   {iso * 1000:7.1f} ms")
    print(f"  whole invoke           {total * 1000:7.1f} ms   (isolation is {100 * iso / total:.1f}% of it)")
    cache = statistics.median(r["steps"]["cache"] for r in warm)
    whole = statistics.median(r["durationSeconds"] for r in warm)
    warm_iso = statistics.median(r["isolation"]["seconds"] for r in warm)
    hits = {r["cache"]["hit"] for r in warm}
    print(f"{os.path.relpath(args.app, ROOT)}, unchanged rebuild on the warm instance (median of 3, cache {hits}):")
    print(f"  cache step             {cache * 1000:7.1f} ms   ({100 * cache / whole:.1f}% of the invoke)")
    print(f"  isolation              {warm_iso * 1000:7.1f} ms")
    print(f"  whole invoke           {whole * 1000:7.1f} ms   (first build {first['durationSeconds']:.2f} s)")
    print(f"handing that warm tree to another build user: {changed} entries in {chown_s * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
