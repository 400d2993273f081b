"""Every headline figure side by side, from one run, as the README's table prints them:

    python bench/figures.py [--starts 15] [--app bench/apps/vite-react]   (needs make bootstrap)

1. exec -> first answer of dist/bootstrap against the same stdlib-only server frozen the same way;
2. exec -> first POST /initialize answer against the moment the port accepts connections;
3. 2,000 files of 20 KB with 20 ms added to every request: the deploy against a sequential oss2
   loop and against its floor (max of the latency floor at the concurrency it rose to, and the
   same deploy with no latency), for a tree whose names are all stable (the worst case: each file
   is uploaded, then switched) and for a bundler's output (95% content-hashed names, uploaded once);
4. the first build on a cold instance that restores node_modules from OSS, against the app's own
   build (`npm run build` as fcbuild timed it), and the restore alone;
5. a whole first build on a cold instance (no cache anywhere) against doing it by hand: download
   and unpack the source, `npm ci` with an empty npm cache, `npm run build`, a parallel upload of
   the output (four of each, taking turns at going first; medians).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import cache_bench  # noqa: E402
import oss2  # noqa: E402
import startup_bench  # noqa: E402
import upload_bench  # noqa: E402

from localoss import LocalOss  # noqa: E402
from tests.archives import pack_tar  # noqa: E402
from tests.runtime_proc import start_runtime  # noqa: E402

ROWS: list[tuple[str, str, str]] = []


def row(figure: str, measured: str, against: str) -> None:
    ROWS.append((figure, measured, against))
    print(f"  {figure}: {measured} ({against})", flush=True)


def startup(starts: int) -> None:
    bootstrap = os.path.join(ROOT, "dist", "bootstrap")
    if not os.path.exists(bootstrap):
        sys.exit("no dist/bootstrap: run make bootstrap first")
    startup_bench.build_floor()
    mine, floors = startup_bench.interleaved([[bootstrap], [startup_bench.FLOOR_BIN]], starts)
    ours, floor = statistics.median(t for _, t in mine), statistics.median(t for _, t in floors)
    row(
        "exec → first answer of `dist/bootstrap`",
        f"{ours * 1000:.0f} ms",
        f"{ours / floor:.2f}x the frozen floor, {floor * 1000:.0f} ms",
    )
    times = startup_bench.start_to_first_answer([bootstrap], starts, "POST", "/initialize")
    opened = statistics.median(o for o, _ in times)
    after = statistics.median(i - o for o, i in times)
    row(
        "exec → first `/initialize` answer",
        f"{opened * 1000 + after * 1000:.0f} ms",
        f"{after * 1000:.0f} ms after the port opened at {opened * 1000:.0f} ms",
    )


def uploads(files: int = 2000, size: int = 20_000, latency_ms: float = 20) -> None:
    work = tempfile.mkdtemp(prefix="fcbuild-figures-")
    tree, site = os.path.join(work, "tree"), os.path.join(work, "site")
    upload_bench.make_tree(tree, files, size)
    upload_bench.make_site(site, files, size, 1)
    slow, slow_ep = upload_bench.start_server(os.path.join(work, "slow"), latency_ms)
    fast, fast_ep = upload_bench.start_server(os.path.join(work, "fast"), 0)
    try:
        t_seq = upload_bench.sequential(slow_ep, tree)
        t_deploy, report = upload_bench.deploy(slow_ep, "par/", tree, "r1")
        t_fast, _ = upload_bench.deploy(fast_ep, "par/", tree, "r1")
        t_site, site_report = upload_bench.deploy(slow_ep, "site/", site, "s1")
        t_site_fast, _ = upload_bench.deploy(fast_ep, "site/", site, "s1")
    finally:
        for proc in (slow, fast):
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    for what, seconds, no_latency, used in (
        ("every name stable: two requests a file", t_deploy, t_fast, report.peak_concurrency),
        ("a bundler's output, 95% content-hashed names", t_site, t_site_fast, site_report.peak_concurrency),
    ):
        floor = max(math.ceil(files / used) * latency_ms / 1000, no_latency)
        row(
            f"{files:,} × {size // 1000} KB files, {latency_ms:.0f} ms per request, two-phase deploy ({what})",
            f"{seconds:.2f} s: {t_seq / seconds:.1f}x the sequential loop ({t_seq:.1f} s)",
            f"{seconds / floor:.2f}x the floor {floor:.2f} s; concurrency rose to {used}",
        )


def builds(app: str, turns: int) -> None:
    work = tempfile.mkdtemp(prefix="fcbuild-figures-")
    rounds = cache_bench.one_round(os.path.join(work, "cache"), app, "lockfile")
    first, oss_steps = rounds["steps"][0], rounds["steps"][3]
    row(
        "first build on a cold instance, node_modules from OSS",
        f"{rounds['oss']:.2f} s, the restore {oss_steps['cache']:.2f} s",
        f"{rounds['oss'] / oss_steps['build']:.2f}x the app's own build ({oss_steps['build']:.2f} s); "
        f"no cache: {rounds['first']:.2f} s, install {first['install']:.2f} s",
    )
    hand, ours = [], []
    for i in range(turns):
        # Each goes first in turn: the registry's speed drifts within a run.
        for kind in ("hand", "ours") if i % 2 == 0 else ("ours", "hand"):
            if kind == "hand":
                hand.append(handmade(app, os.path.join(work, f"hand-{i}")))
            else:
                ours.append(fcbuild_first(app, os.path.join(work, f"ours-{i}")))

    def phases(runs: list[dict[str, float]]) -> str:
        install, build = (statistics.median(r[k] for r in runs) for k in ("install", "build"))
        rest = statistics.median(r["total"] - r["install"] - r["build"] for r in runs)
        return f"install {install:.1f}, build {build:.1f}, the rest {rest:.1f} s"

    def totals(runs: list[dict[str, float]]) -> str:
        return ", ".join(f"{r['total']:.1f}" for r in runs)

    h, o = (statistics.median(r["total"] for r in runs) for runs in (hand, ours))
    row(
        "whole first build (no cache anywhere) against the hand-made sequence",
        f"{o:.2f} s ({phases(ours)})",
        f"{o / h:.2f}x the hand-made {h:.2f} s ({phases(hand)}; runs: fcbuild {totals(ours)}; by hand {totals(hand)})",
    )
    shutil.rmtree(work, ignore_errors=True)


def _oss(work: str) -> LocalOss:
    return LocalOss(os.path.join(work, "oss"), buckets=["src", "site"], accounts=[cache_bench.ACCOUNT])


AUTH = oss2.StsAuth(*cache_bench.HEADERS.values(), auth_version="v4")


def handmade(app: str, work: str) -> dict[str, float]:
    """Download and unpack the source, npm ci with an empty cache, npm run build, a parallel upload:
    the seconds of the whole and of the install and the build."""
    import oss_io
    from context import Credentials
    from deploy_plan import content_type_for, scan_tree

    os.makedirs(work)
    with _oss(work) as server:
        oss2.Bucket(AUTH, server.endpoint, "src", region="cn-hangzhou").put_object("site.tar.gz", pack_tar(app))
        account = cache_bench.ACCOUNT
        client = oss_io.OssClient(
            Credentials(account.access_key_id, account.access_key_secret, account.security_token),
            "cn-hangzhou",
            server.endpoint,
        )
        started = time.perf_counter()
        archive = os.path.join(work, "site.tar.gz")
        client.download_file("src", "site.tar.gz", archive)
        unpacked = os.path.join(work, "unpacked")
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked)
        (top,) = os.listdir(unpacked)  # one folder, as a GitHub download has it
        project = os.path.join(unpacked, top)
        env = dict(os.environ, npm_config_cache=os.path.join(work, "npm-cache"))
        times = {}
        for step, argv in (("install", ["npm", "ci", "--no-audit", "--no-fund"]), ("build", ["npm", "run", "build"])):
            step_started = time.perf_counter()
            subprocess.run(argv, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[step] = time.perf_counter() - step_started
        dist = os.path.join(project, "dist")
        items = [
            oss_io.PutItem(
                f"app/{f.path}", os.path.join(dist, f.path), f.size, f.md5, {"Content-Type": content_type_for(f.path)}
            )
            for f in scan_tree(dist)
        ]
        client.put_files("site", items)
        return {"total": time.perf_counter() - started, **times}


def fcbuild_first(app: str, work: str) -> dict[str, float]:
    os.makedirs(work)
    with _oss(work) as server:
        oss2.Bucket(AUTH, server.endpoint, "src", region="cn-hangzhou").put_object("site.tar.gz", pack_tar(app))
        rt = start_runtime({"FCBUILD_OSS_ENDPOINT": server.endpoint}, workdir=os.path.join(work, "instance"))
        try:
            seconds, result = cache_bench.timed_build(rt, {})
            if result["cache"]["hit"] != "miss":
                raise SystemExit(f"expected a cold build, got {json.dumps(result['cache'])}")
            return {"total": seconds, "install": result["steps"]["install"], "build": result["steps"]["build"]}
        finally:
            rt.stop(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=15)
    parser.add_argument("--app", default=os.path.join(ROOT, "bench", "apps", "vite-react"))
    parser.add_argument("--only", choices=("startup", "uploads", "builds"), action="append")
    parser.add_argument("--turns", type=int, default=4, help="whole first builds of each kind, taking turns first")
    args = parser.parse_args()
    parts = args.only or ["startup", "uploads", "builds"]
    print("measuring (one run, medians where there are several):", flush=True)
    if "startup" in parts:
        startup(args.starts)
    if "uploads" in parts:
        uploads()
    if "builds" in parts:
        builds(os.path.abspath(args.app), args.turns)
    print("\n| figure | measured | against |\n|---|---|---|")
    for figure, measured, against in ROWS:
        print(f"| {figure} | {measured} | {against} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
