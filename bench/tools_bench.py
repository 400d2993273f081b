"""What checking the package-manager release costs a warm pnpm build, end to end through fcbuild.

    python bench/tools_bench.py [--rounds 5]

The pnpm fixture (tests/fixtures/pnpm-site, pinned pnpm 9.15.9 through corepack, a dependency from
the registry) is built once to install pnpm and warm the caches, then rebuilt --rounds times. Each
rebuild hashes every file of the pnpm release before it runs (tool_cache.PackageManagerReleases);
the result's `tools.seconds` is that check. Reported: its median against the median rebuild.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import oss2  # noqa: E402

from localoss import Account, LocalOss  # noqa: E402
from tests.archives import FIXTURES, pack_tar  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402

ACCOUNT = Account("STS.bench", "bench-secret", "bench-token")
HEADERS = {
    "x-fc-access-key-id": ACCOUNT.access_key_id,
    "x-fc-access-key-secret": ACCOUNT.access_key_secret,
    "x-fc-security-token": ACCOUNT.security_token,
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    work = tempfile.mkdtemp(prefix="fcbuild-tools-bench-")
    with LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[ACCOUNT]) as oss:
        auth = oss2.StsAuth(*HEADERS.values(), auth_version="v4")
        src = oss2.Bucket(auth, oss.endpoint, "src", region="cn-hangzhou")
        src.put_object("pnpm.tar.gz", pack_tar(os.path.join(FIXTURES, "pnpm-site")))
        # this machine's registry serves packages without npm's signatures (see tests/test_e2e_corepack.py)
        env = {"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_COREPACK_SIGNATURES": "0"}
        rt = start_runtime(env, workdir=os.path.join(work, "instance"))
        event = {
            "source": "oss://src/pnpm.tar.gz",
            "target": "oss://site/app/",
            "build": {"registry": registry.stdout.strip()},
        }
        try:
            first = rt.invoke(event, headers=HEADERS, timeout=600).json()
            if "tools" not in first:
                raise SystemExit(f"first build failed: {first}")
            rounds = [rt.invoke(event, headers=HEADERS, timeout=600).json() for _ in range(args.rounds)]
        finally:
            rt.stop(timeout=60)
    check = statistics.median(r["tools"]["seconds"] for r in rounds)
    whole = statistics.median(r["durationSeconds"] for r in rounds)
    print(f"pnpm 9.15.9 through corepack, warm rebuild, median of {args.rounds}:")
    print(f"  verifying the release   {check * 1000:6.1f} ms ({first['tools']})")
    print(f"  whole invoke            {whole * 1000:6.1f} ms   (the check is {100 * check / whole:.1f}% of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
