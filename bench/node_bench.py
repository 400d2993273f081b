"""What a project pays when it asks for a Node.js the instance does not have.

    python bench/node_bench.py [--rounds 3]

The tiny project with `.nvmrc` 22 on this machine (Node 20 only), whole `/invoke` round trips through
the real runtime, each on a new instance (a runtime of its own), in turns:

1. Node 22 installed: the instance has it (FCBUILD_NODE_PATHS), the baseline;
2. the first build: the release comes from the npm registry (resolved, downloaded, checked, unpacked,
   and kept in OSS);
3. a cold instance with the release kept in OSS: resolved at the registry, taken from OSS.

Prints the medians and the differences to the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import oss2  # noqa: E402

from bench.isolation_bench import ACCOUNT, HEADERS  # noqa: E402
from localoss import LocalOss  # noqa: E402
from tests.archives import FIXTURES, pack_tar  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402

COMMAND = "node build.js && node -e \"require('fs').writeFileSync('dist/node.txt', process.version)\""


def invoke(env: dict[str, str], prefix: str, workdir: str) -> dict:
    rt = start_runtime(env, workdir=workdir)
    try:
        event = {"source": "oss://src/needs-22.tar.gz", "target": f"oss://site/{prefix}", "build": {"command": COMMAND}}
        resp = rt.invoke(event, headers=HEADERS, timeout=900, fresh=True)
        if resp.status != 200:
            raise SystemExit(f"build failed: {resp.body.decode()}")
        return resp.json()
    finally:
        rt.stop(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fcbuild-node-bench-")
    project = os.path.join(work, "project")
    shutil.copytree(os.path.join(FIXTURES, "tiny"), project)
    with open(os.path.join(project, ".nvmrc"), "w") as f:
        f.write("22\n")
    times: dict[str, list[float]] = {"installed": [], "registry": [], "oss": []}
    with LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[ACCOUNT]) as oss:
        src = oss2.Bucket(oss2.StsAuth(*HEADERS.values(), auth_version="v4"), oss.endpoint, "src", region="cn-hangzhou")
        src.put_object("needs-22.tar.gz", pack_tar(project))
        env = {"FCBUILD_OSS_ENDPOINT": oss.endpoint}
        first = invoke(env, "warm-up/", os.path.join(work, "i0"))  # also makes the installed copy
        installed = os.path.join(work, "node22")
        shutil.copytree(os.path.dirname(first["node"]["path"]), installed, symlinks=True)
        with_22 = {**env, "FCBUILD_NODE_PATHS": installed}
        for n in range(args.rounds):
            result = invoke(with_22, f"installed-{n}/", os.path.join(work, f"a{n}"))
            assert result["node"]["from"] == "instance", result["node"]
            times["installed"].append(result["durationSeconds"])
            result = invoke(env, f"fresh-{n}/", os.path.join(work, f"b{n}"))  # a new prefix: no OSS copy yet
            assert result["node"]["from"] == "registry", result["node"]
            times["registry"].append(result["durationSeconds"])
            result = invoke(env, f"fresh-{n}/", os.path.join(work, f"c{n}"))  # the copy the build above kept
            assert result["node"]["from"] == "oss", result["node"]
            times["oss"].append(result["durationSeconds"])
    shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["installed"])
    version = first["node"]["version"]
    print(f"a project asking for Node 22 on a Node 20 instance, whole invoke, median of {args.rounds} ({version}):")
    print(f"  Node 22 installed                  {base:6.2f} s")
    for name, label in (("registry", "first build, from the registry"), ("oss", "cold instance, from OSS")):
        median = statistics.median(times[name])
        print(f"  {label:<34} {median:6.2f} s   (+{median - base:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
