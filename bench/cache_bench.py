"""The dependency cache on a real Vite app, end to end through fcbuild.

    python bench/cache_bench.py [--rounds 2] [--app bench/apps/vite-react] [--shape lockfile]

The default app is of realistic size (React, TypeScript, a router, ESLint, Vitest: 127 MB of
node_modules, `tsc && vite build`), with its npm lockfile; demo/site is the small sample.
`--shape` builds the same app as it comes (`lockfile`), without its lockfile (`no-lockfile`: the
cache is keyed by package.json and npm install runs on the restored tree), or as `apps/web` of an
npm workspace beside a sibling package it depends on (`workspace`: `build.root`, one lockfile at
the workspace root, written here by `npm install --package-lock-only`).

Each round, on a new local OSS root:
1. first build on a cold instance with no cache anywhere (empty workspace: no npm cache, no node_modules);
2. a rebuild on the same, now warm, instance, at once (the first build's OSS save still running);
3. another rebuild once that save has finished;
4. after that instance stops (/pre-stop flushes the OSS copy), a first build on another cold instance
   that restores node_modules from OSS.
Times are whole /invoke round trips (download, install, build, deploy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import oss2  # noqa: E402

from localoss import Account, LocalOss  # noqa: E402
from tests.archives import pack_tar  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402

ACCOUNT = Account("STS.bench", "bench-secret", "bench-token")
HEADERS = {
    "x-fc-access-key-id": ACCOUNT.access_key_id,
    "x-fc-access-key-secret": ACCOUNT.access_key_secret,
    "x-fc-security-token": ACCOUNT.security_token,
}
EVENT = {"source": "oss://src/site.tar.gz", "target": {"bucket": "site", "prefix": "app/"}}
SHAPES = ("lockfile", "no-lockfile", "workspace")


def shaped_project(app: str, shape: str, work: str) -> tuple[str, dict]:
    """The folder to pack and the request's build settings for `shape`."""
    if shape == "lockfile":
        return app, {}
    ignore = shutil.ignore_patterns("node_modules", "dist", "package-lock.json")
    if shape == "no-lockfile":
        project = os.path.join(work, "no-lockfile")
        shutil.copytree(app, project, ignore=ignore)
        return project, {}
    project = os.path.join(work, "workspace")
    web, ui = os.path.join(project, "apps", "web"), os.path.join(project, "packages", "ui")
    shutil.copytree(app, web, ignore=ignore)
    os.makedirs(ui)
    with open(os.path.join(ui, "package.json"), "w") as f:
        json.dump({"name": "ui", "version": "1.0.0", "main": "index.js"}, f)
    with open(os.path.join(ui, "index.js"), "w") as f:
        f.write("exports.banner = (text) => `<h1>${text}</h1>`;\n")
    with open(os.path.join(web, "package.json")) as f:
        package = json.load(f)
    package["name"] = "web"
    package["dependencies"]["ui"] = "1.0.0"
    with open(os.path.join(web, "package.json"), "w") as f:
        json.dump(package, f, indent=2)
    with open(os.path.join(project, "package.json"), "w") as f:
        json.dump({"name": "workspace", "private": True, "workspaces": ["apps/*", "packages/*"]}, f, indent=2)
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts"], cwd=project, check=True, capture_output=True
    )
    return project, {"root": "apps/web"}


def timed_build(rt, build: dict) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    resp = rt.invoke({**EVENT, **({"build": build} if build else {})}, headers=HEADERS, timeout=900)
    elapsed = time.perf_counter() - started
    if resp.status != 200:
        raise SystemExit(f"build failed: {resp.body.decode()}")
    return elapsed, resp.json()


def one_round(work: str, app: str, shape: str) -> dict[str, float]:
    project, build = shaped_project(app, shape, work)
    with LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[ACCOUNT]) as oss:
        auth = oss2.StsAuth(*HEADERS.values(), auth_version="v4")
        oss2.Bucket(auth, oss.endpoint, "src", region="cn-hangzhou").put_object("site.tar.gz", pack_tar(project))
        env = {"FCBUILD_OSS_ENDPOINT": oss.endpoint}
        first_rt = start_runtime(env, workdir=os.path.join(work, "instance-1"))
        try:
            t_first, first = timed_build(first_rt, build)
            t_warm, warm = timed_build(first_rt, build)  # while the first build's OSS copy is still being saved
            site = oss2.Bucket(auth, oss.endpoint, "site", region="cn-hangzhou")
            deadline = time.monotonic() + 300
            while not list(oss2.ObjectIteratorV2(site, prefix="app/.fcbuild/deps/")) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1)  # the save has uploaded; let its thread finish measuring the entry
            t_settled, settled = timed_build(first_rt, build)
        finally:
            first_rt.stop(timeout=120)
        cold_rt = start_runtime(env, workdir=os.path.join(work, "instance-2"))
        try:
            t_oss, restored = timed_build(cold_rt, build)
        finally:
            cold_rt.stop(timeout=120)
    hits = (first["cache"]["hit"], warm["cache"]["hit"], settled["cache"]["hit"], restored["cache"]["hit"])
    if hits != ("miss", "warm", "warm", "oss"):
        raise SystemExit(f"unexpected cache outcomes {hits}")
    steps = (first["steps"], warm["steps"], settled["steps"], restored["steps"])
    return {"first": t_first, "warm": t_warm, "settled": t_settled, "oss": t_oss, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--app", default=os.path.join(ROOT, "bench", "apps", "vite-react"))
    parser.add_argument("--shape", choices=SHAPES, default="lockfile")
    args = parser.parse_args()
    app = os.path.abspath(args.app)
    rounds = [one_round(tempfile.mkdtemp(prefix="fcbuild-cache-bench-"), app, args.shape) for _ in range(args.rounds)]
    first = statistics.median(r["first"] for r in rounds)
    warm = statistics.median(r["warm"] for r in rounds)
    settled = statistics.median(r["settled"] for r in rounds)
    oss = statistics.median(r["oss"] for r in rounds)
    print(f"{os.path.relpath(app, ROOT)} (npm, {args.shape}), whole /invoke, median of {args.rounds} rounds:")
    print(f"  first build, cold instance, no cache       {first:6.2f} s")
    print(f"  rebuild on the warm instance, at once      {warm:6.2f} s   {first / warm:4.1f}x faster")
    print(f"  rebuild, after the OSS save has finished   {settled:6.2f} s   {first / settled:4.1f}x faster")
    print(f"  first build, cold instance, OSS cache      {oss:6.2f} s   {first / oss:4.1f}x faster")
    for i, r in enumerate(rounds, 1):
        for label, steps in zip(("first", "warm", "later", "oss"), r["steps"], strict=True):
            print(f"  round {i} {label:5s} " + "  ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
