"""One package of a workspace: a whole-workspace install against a filtered one, side by side.

    python bench/workspace_install_bench.py [--rounds 3]

The workspace (npm, one lockfile at its root, written here by `npm install --package-lock-only`):
`apps/web` is bench/apps/vite-react depending on `packages/ui`; `apps/docs` is a VitePress site with
its own dependencies, which a build of `apps/web` does not need. Each round, in a fresh copy with no
node_modules and the npm cache already warm (as on a warm instance): `npm ci` (the whole
workspace) and `npm ci --workspace web` (web and what it depends on), taken in turns; then
`npm run build --workspace web` on each, to see that the filtered tree builds.
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

from dep_cache import _tree_stats  # noqa: E402

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def write_json(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)


def make_workspace(dest: str) -> None:
    ignore = shutil.ignore_patterns("node_modules", "dist", "package-lock.json")
    shutil.copytree(os.path.join(ROOT, "bench", "apps", "vite-react"), os.path.join(dest, "apps", "web"), ignore=ignore)
    with open(os.path.join(dest, "apps", "web", "package.json")) as f:
        web = json.load(f)
    web["name"] = "web"
    web["dependencies"]["ui"] = "1.0.0"
    write_json(os.path.join(dest, "apps", "web", "package.json"), web)
    write_json(os.path.join(dest, "packages", "ui", "package.json"), {"name": "ui", "version": "1.0.0"})
    docs = os.path.join(dest, "apps", "docs")
    shutil.copytree(os.path.join(ROOT, "tests", "fixtures", "vitepress-site", "docs"), os.path.join(docs, "docs"))
    write_json(
        os.path.join(docs, "package.json"),
        {
            "name": "docs",
            "private": True,
            "scripts": {"build": "vitepress build docs"},
            "devDependencies": {"vitepress": "1.6.3"},
        },
    )
    write_json(
        os.path.join(dest, "package.json"), {"name": "mono", "private": True, "workspaces": ["apps/*", "packages/*"]}
    )
    subprocess.run(["npm", "install", "--package-lock-only", "--ignore-scripts"], cwd=dest, check=True, **QUIET)


def tree_mb(path: str) -> float:
    return _tree_stats(path)[0] / 2**20


def install(template: str, work: str, argv: list[str], env: dict) -> tuple[float, float, bool]:
    """(seconds, MB of node_modules folders, whether web then builds)."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work)
    started = time.perf_counter()
    subprocess.run(argv, cwd=work, env=env, check=True, **QUIET)
    seconds = time.perf_counter() - started
    size = sum(
        tree_mb(os.path.join(folder, "node_modules"))
        for folder in (
            work,
            *(os.path.join(work, "apps", a) for a in ("web", "docs")),
            os.path.join(work, "packages", "ui"),
        )
        if os.path.isdir(os.path.join(folder, "node_modules"))
    )
    built = subprocess.run(["npm", "run", "build", "--workspace", "web"], cwd=work, env=env, **QUIET).returncode == 0
    return seconds, size, built


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fcbuild-ws-install-")
    template = os.path.join(work, "template")
    make_workspace(template)
    env = dict(os.environ, npm_config_cache=os.path.join(work, "npm-cache"), npm_config_audit="false")
    variants = {
        "whole workspace: npm ci": ["npm", "ci", "--prefer-offline"],
        "filtered: npm ci --workspace web": ["npm", "ci", "--prefer-offline", "--workspace", "web"],
    }
    install(template, os.path.join(work, "warm-up"), variants["whole workspace: npm ci"], env)  # fills the cache
    results: dict[str, list[tuple[float, float, bool]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, argv in variants.items():
            results[name].append(install(template, os.path.join(work, "run"), argv, env))
    shutil.rmtree(work, ignore_errors=True)
    print(f"apps/web of a workspace beside apps/docs (VitePress), warm npm cache, median of {args.rounds}:")
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        size = statistics.median(r[1] for r in runs)
        print(f"  {name:36s} {seconds:6.2f} s   {size:6.0f} MB of node_modules   web builds: {all(r[2] for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
