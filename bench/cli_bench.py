"""What the `fcbuild` command costs (the runtime in FC_RUNTIME_BIN, else from source):

    python bench/cli_bench.py [--deploys 5] [--files 10000]

1. `fcbuild deploy` of the demo site to a warm function (the local OSS server, the FC stand-in, the
   real runtime), against the same by hand: a script that puts the archive with oss2 and invokes the
   function with the official SDK (the same Python start and imports). The project is unchanged, so
   both deploy nothing new; medians of --deploys each, in turns, after a warm-up build.
2. Choosing, packing and digesting a --files project (a git work tree) against `git archive` of it
   to a .tar.gz; medians of 7 each, in turns, after one warm-up round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import localfc  # noqa: E402
from fcbuild_cli import pack  # noqa: E402
from localoss import LocalOss  # noqa: E402
from tests.conftest import AK, REGION, STS  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402

SITE = os.path.join(ROOT, "demo", "site")
CREDS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": STS.access_key_id,
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STS.access_key_secret,
    "ALIBABA_CLOUD_SECURITY_TOKEN": STS.security_token,
}
BY_HAND = """
import json, os, sys, oss2
from alibabacloud_fc20230330.client import Client
from alibabacloud_fc20230330 import models
from alibabacloud_tea_openapi import models as om
from alibabacloud_tea_util import models as um
oss_endpoint, fc_endpoint, archive = sys.argv[1:4]
ak, sk, token = (os.environ["ALIBABA_CLOUD_" + n] for n in ("ACCESS_KEY_ID", "ACCESS_KEY_SECRET", "SECURITY_TOKEN"))
with open(archive, "rb") as f:
    oss2.Bucket(oss2.StsAuth(ak, sk, token, auth_version="v4"), oss_endpoint, "src", region="cn-hangzhou").put_object(
        "byhand/site.tar.gz", f.read()
    )
config = om.Config(access_key_id=ak, access_key_secret=sk, security_token=token,
                   endpoint=fc_endpoint.split("://")[1], protocol="http", region_id="cn-hangzhou")
event = {"source": "oss://src/byhand/site.tar.gz", "target": "oss://site/bench/"}
request = models.InvokeFunctionRequest(body=json.dumps(event).encode())
response = Client(config).invoke_function_with_options(
    "fcbuild", request, models.InvokeFunctionHeaders(), um.RuntimeOptions(read_timeout=600000)
)
assert "errorType" not in json.loads(response.body.read())
"""


def deploys(count: int) -> None:
    work = tempfile.mkdtemp(prefix="fcbuild-cli-bench-")
    with LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as oss:
        fc = localfc.serve(
            address=("127.0.0.1", 0),
            access_key_id=STS.access_key_id,
            access_key_secret=STS.access_key_secret,
            security_token=STS.security_token,
            runtime="",
        )
        rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **CREDS})
        fc.runtime = f"127.0.0.1:{rt.port}"
        fc_endpoint = f"http://127.0.0.1:{fc.server_address[1]}"
        env = {
            **os.environ,
            **CREDS,
            "PYTHONPATH": ROOT,
            "FCBUILD_OSS_ENDPOINT": oss.endpoint,
            "FCBUILD_FC_ENDPOINT": fc_endpoint,
        }
        cli = [sys.executable, "-m", "fcbuild_cli", "deploy", SITE, "--target", "oss://site/bench/", "--source",
               "oss://src/cli/", "--function", "fcbuild", "--region", REGION]  # fmt: skip
        archive = os.path.join(work, "site.tar.gz")
        with open(archive, "wb") as f:
            f.write(pack.pack(SITE, pack.project_files(SITE, "dist")))
        hand = [sys.executable, "-c", BY_HAND, oss.endpoint, fc_endpoint, archive]
        try:
            for argv in (cli, hand):  # warm-up: the function's caches, both paths' first upload
                subprocess.run(argv, env=env, check=True, capture_output=True)
            timings: dict[str, list[float]] = {"cli": [], "hand": []}
            for _ in range(count):
                for name, argv in (("cli", cli), ("hand", hand)):
                    started = time.perf_counter()
                    subprocess.run(argv, env=env, check=True, capture_output=True)
                    timings[name].append(time.perf_counter() - started)
        finally:
            rt.kill()
            fc.shutdown()
    a, b = statistics.median(timings["cli"]), statistics.median(timings["hand"])
    print(f"fcbuild deploy {a:.2f} s, by hand (oss2 put + SDK invoke) {b:.2f} s: {a / b:.2f}x ({count} each)")
    shutil.rmtree(work, ignore_errors=True)


def packing(files: int) -> None:
    work = tempfile.mkdtemp(prefix="fcbuild-pack-bench-")
    for i in range(files):
        folder = os.path.join(work, "src", f"d{i % 100:02d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"f{i}.js"), "w") as f:
            f.write(f"export const value{i} = {i};\n" * 20)
    run = {"cwd": work, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(["git", "add", "."], **run)
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "x"], **run)
    archive = ["git", "archive", "--format=tar.gz", "-o", os.path.join(work, ".git", "bench.tgz"), "HEAD"]
    ours, git = [], []
    for i in range(8):  # the first round of each only warms the page cache
        started = time.perf_counter()
        data = pack.pack(work, pack.project_files(work, "dist"))
        pack.digest(data)
        took = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(archive, **run)
        if i:
            ours.append(took)
            git.append(time.perf_counter() - started)
    a, b = statistics.median(ours), statistics.median(git)
    print(f"pack + digest of {files} files {a:.3f} s, git archive {b:.3f} s: {a / b:.2f}x (7 each)")
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploys", type=int, default=5)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    packing(args.files)
    deploys(args.deploys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
