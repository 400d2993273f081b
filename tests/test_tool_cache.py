"""Package-manager releases: installed by the runtime through the real corepack (from the registry
npm is configured with here, named as a mirror), verified before every use, replaced when changed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import pytest

from tool_cache import PackageManagerReleases, tree_digest
from toolchain import PackageManager

VERSION = "9.15.9"


@pytest.fixture
def registry():
    return subprocess.run(
        ["npm", "config", "get", "registry"], capture_output=True, text=True, check=True
    ).stdout.strip()


def node_bin():
    return os.path.dirname(shutil.which("node"))


def test_a_changed_release_is_installed_afresh_before_it_runs(tmp_path, registry):
    releases = PackageManagerReleases(str(tmp_path / "corepack"))
    pm = PackageManager("pnpm", VERSION, "pnpm-lock.yaml", release=f"pnpm@{VERSION}")
    log = logging.getLogger("test")
    resolved, report = releases.ensure(pm, node_bin(), dict(os.environ), registry, log)
    assert resolved.version == VERSION and report["installed"] == f"pnpm@{VERSION}"
    folder = releases.release_dir("pnpm", VERSION)
    assert oct(os.stat(folder).st_mode & 0o777) == "0o755"
    _, report = releases.ensure(pm, node_bin(), dict(os.environ), registry, log)
    assert report == {"verified": f"pnpm@{VERSION}", "seconds": report["seconds"]}
    before = tree_digest(folder)
    entry = os.path.join(folder, "bin", "pnpm.cjs")
    with open(entry, "a") as f:
        f.write('\nconsole.log("POISONED");\n')
    _, report = releases.ensure(pm, node_bin(), dict(os.environ), registry, log)
    assert "its files changed" in report["replaced"] and report["installed"] == f"pnpm@{VERSION}"
    assert tree_digest(folder) == before
    with open(entry) as f:
        assert "POISONED" not in f.read()


def test_a_release_this_runtime_did_not_install_is_not_trusted(tmp_path, registry):
    home = tmp_path / "corepack"
    planted = home / "v1" / "pnpm" / VERSION / "bin"
    planted.mkdir(parents=True)
    (planted / "pnpm.cjs").write_text('console.log("planted")\n')
    releases = PackageManagerReleases(str(home))
    pm = PackageManager("pnpm", VERSION, release=f"pnpm@{VERSION}")
    _, report = releases.ensure(pm, node_bin(), dict(os.environ), registry, logging.getLogger("test"))
    assert "did not install it" in report["replaced"]
    assert "planted" not in (planted / "pnpm.cjs").read_text()


def test_an_unpinned_major_resolves_once_to_an_exact_version(tmp_path, registry):
    releases = PackageManagerReleases(str(tmp_path / "corepack"))
    pm = PackageManager("pnpm", "", "pnpm-lock.yaml", release="pnpm@9")
    resolved, _ = releases.ensure(pm, node_bin(), dict(os.environ), registry, logging.getLogger("test"))
    assert resolved.version.startswith("9.") and resolved.argv("install") == (
        "corepack",
        f"pnpm@{resolved.version}",
        "install",
    )
    again, report = releases.ensure(pm, node_bin(), dict(os.environ), registry, logging.getLogger("test"))
    assert again.version == resolved.version and "verified" in report
