"""Package-manager releases: installed by the runtime through the real corepack (from the registry
npm is configured with here, named as a mirror), verified before every use, replaced when changed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import pytest

from tool_cache import PackageManagerReleases, origin_home, tree_digest
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
    assert report == {"verified": f"pnpm@{VERSION}", "seconds": report["seconds"], "home": releases.home}
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
    planted = tmp_path / origin_home(str(home), registry, False) / "v1" / "pnpm" / VERSION / "bin"
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


def test_releases_are_kept_apart_by_the_registry_they_came_from():
    root = "/r"
    mirror, other, default = (origin_home(root, r, False) for r in ("https://a.example/", "https://b.example", ""))
    assert len({mirror, other, default, origin_home(root, "", True)}) == 4
    assert origin_home(root, "https://a.example", False) == mirror  # one registry, however it is spelt
    assert all(os.path.dirname(h) == root for h in (mirror, other, default))


def test_a_pinned_integrity_is_never_answered_by_a_release_installed_without_it(tmp_path, registry):
    """A site installs pnpm@x unpinned (from its registry, no hash checked); a site that pins
    pnpm@x+sha512.<hash> must not run that release: it is installed again against the pin, and a
    pin the registry's tarball does not match fails instead of running what is there."""
    import base64
    import json

    releases = PackageManagerReleases(str(tmp_path / "corepack"))
    log = logging.getLogger("test")
    unpinned = PackageManager("pnpm", VERSION, "pnpm-lock.yaml", release=f"pnpm@{VERSION}")
    releases.ensure(unpinned, node_bin(), dict(os.environ), registry, log)
    wrong = PackageManager("pnpm", VERSION, "pnpm-lock.yaml", release=f"pnpm@{VERSION}+sha512.{'0' * 128}")
    with pytest.raises(Exception) as refused:
        releases.ensure(wrong, node_bin(), dict(os.environ), registry, log)
    assert "could not install" in str(refused.value)
    assert not os.path.exists(releases.release_dir("pnpm", VERSION))
    view = subprocess.run(
        ["npm", "view", f"pnpm@{VERSION}", "dist.integrity", "--json"], capture_output=True, text=True, check=True
    )
    digest = base64.b64decode(json.loads(view.stdout).split("-", 1)[1]).hex()
    right = PackageManager("pnpm", VERSION, "pnpm-lock.yaml", release=f"pnpm@{VERSION}+sha512.{digest}")
    _, report = releases.ensure(right, node_bin(), dict(os.environ), registry, log)
    assert report["installed"] == f"pnpm@{VERSION}"
    _, report = releases.ensure(right, node_bin(), dict(os.environ), registry, log)
    assert report["verified"] == f"pnpm@{VERSION}"
    _, report = releases.ensure(unpinned, node_bin(), dict(os.environ), registry, log)
    assert report["verified"] == f"pnpm@{VERSION}"  # checked against the pin: good for an unpinned site too
