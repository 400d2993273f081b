"""The git source step against `git clone --depth 1` of the same repository, served locally.

    python bench/git_bench.py [--files 1000] [--commits 100] [--rounds 5]

A repository of --files files and --commits commits (each changes a tenth of the files) is served
by `git http-backend` behind the tests' basic-auth server; measured: fcbuild's fetch
(git_source.fetch: a shallow fetch of the branch, then .git removed) and `git clone --depth 1`.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import git_source  # noqa: E402
from tests.test_e2e_git import TOKEN, GitServer  # noqa: E402


def run(*args: str, cwd: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args], cwd=cwd, check=True, capture_output=True
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="fcbuild-git-bench-")
    work = os.path.join(base, "work")
    os.makedirs(work)
    run("init", "-q", "-b", "main", cwd=work)
    for c in range(args.commits):
        for i in range(c % 10, args.files, 10):
            folder = os.path.join(work, f"src/d{i % 25:02d}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"f{i:04d}.js"), "w") as f:
                f.write(f"export const v{i} = {c};\n" * 40)
        run("add", ".", cwd=work)
        run("commit", "-q", "-m", f"commit {c}", cwd=work)
    run("clone", "-q", "--bare", work, os.path.join(base, "repo.git"), cwd=base)
    server = GitServer(base)
    url = server.url("repo.git")
    ours, clones = [], []
    try:
        for r in range(args.rounds):
            dest = os.path.join(base, f"ours-{r}")
            started = time.perf_counter()
            git_source.fetch(url, "main", dest, token=TOKEN, submodules=False, launch_env=dict(os.environ),
                             redact=lambda t: t, log=logging.getLogger("bench"))  # fmt: skip
            ours.append(time.perf_counter() - started)
            dest = os.path.join(base, f"clone-{r}")
            basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
            env = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader"}
            env["GIT_CONFIG_VALUE_0"] = f"Authorization: Basic {basic}"
            started = time.perf_counter()
            subprocess.run(["git", "clone", "-q", "--depth", "1", url, dest], check=True, env=env, capture_output=True)
            clones.append(time.perf_counter() - started)
    finally:
        server.shutdown()
        shutil.rmtree(base, ignore_errors=True)
    a, b = statistics.median(ours), statistics.median(clones)
    print(f"{args.files} files, {args.commits} commits, served locally; median of {args.rounds}:")
    print(f"  fcbuild's git source step   {a * 1000:7.1f} ms")
    print(f"  git clone --depth 1         {b * 1000:7.1f} ms   (fcbuild is {a / b:.2f}x of it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
