"""Projects as people write them, built from the minimal request (source and target) through the real
fcbuild process with packages from the npm registry: pnpm with no pin and a lockfile pnpm 9 wrote,
yarn classic with its yarn.lock, a hand-made webpack 5 setup, and an npm lockfile that the Node's
own npm cannot read."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

from localoss import LocalOss
from tests.archives import FIXTURES, pack_tar
from tests.conftest import AK, REGION, STS
from tests.runtime_proc import registry_allowance, start_runtime
from tests.test_e2e_build import CREDS, raw
from tests.test_e2e_corepack import NO_SIGNATURES


@pytest.fixture(scope="module")
def oss(tmp_path_factory):
    with LocalOss(str(tmp_path_factory.mktemp("oss")), buckets=["src", "site"], accounts=[AK, STS], region=REGION) as s:
        yield s


@pytest.fixture(scope="module")
def registry():
    done = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def runtime(oss):
    rt = start_runtime({"FCBUILD_OSS_ENDPOINT": oss.endpoint, **NO_SIGNATURES, **registry_allowance()})
    yield rt
    assert rt.stop() == 0


def build(oss, rt, fixture, registry, **build):
    raw(oss, "src").put_object(f"{fixture}.tar.gz", pack_tar(os.path.join(FIXTURES, fixture)))
    event = {
        "source": f"oss://src/{fixture}.tar.gz",
        "target": f"oss://site/{fixture}/",
        "build": {"registry": registry, **build},
    }
    resp = rt.invoke(event, headers=CREDS, timeout=600)
    assert resp.status == 200, resp.body
    return resp.json()


def page_script(oss, fixture):
    """The deployed index.html and the script it loads, as a browser would fetch them."""
    site = raw(oss, "site")
    html = site.get_object(f"{fixture}/index.html").read().decode()
    src = re.search(r'<script[^>]*src="\.?/?([^"]+)"', html)[1]
    return html, site.get_object(f"{fixture}/{src}").read().decode()


def test_unpinned_pnpm_runs_the_major_that_wrote_its_lockfile(oss, runtime, registry):
    result = build(oss, runtime, "pnpm-unpinned", registry)
    pm = result["packageManager"]
    assert pm["name"] == "pnpm" and pm["lockfile"] == "pnpm-lock.yaml"
    assert re.fullmatch(r"9\.\d+\.\d+", pm["version"]), pm  # lockfileVersion '9.0', not the newest pnpm
    log = runtime.output()
    assert f"[install] $ corepack pnpm@{pm['version']} install --frozen-lockfile" in log
    assert f"package manager pnpm {pm['version']} runs (corepack, for pnpm@9)" in log
    _, script = page_script(oss, "pnpm-unpinned")
    assert "pnpm true postinstall yes" in script


def test_yarn_classic_installs_from_its_lockfile(oss, runtime, registry):
    result = build(oss, runtime, "yarn-classic", registry)
    pm = result["packageManager"]
    assert pm["name"] == "yarn" and pm["lockfile"] == "yarn.lock"
    assert re.fullmatch(r"1\.22\.\d+", pm["version"]), pm
    assert f"[install] $ corepack yarn@{pm['version']} install --frozen-lockfile" in runtime.output()
    _, script = page_script(oss, "yarn-classic")
    assert f"hello, yarn classic postinstall yes yarn/{pm['version']}" in script


def test_a_webpack_project_builds_and_its_page_loads_its_bundle(oss, runtime, registry):
    result = build(oss, runtime, "webpack-site", registry)
    assert result["outputDir"] == "dist"
    npm = subprocess.run(["npm", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert result["packageManager"] == {"name": "npm", "version": npm, "lockfile": "package-lock.json"}
    html, script = page_script(oss, "webpack-site")
    assert "<title>webpack site</title>" in html
    assert "Hello from" in script and "webpack" in script  # the bundled modules, minified


@pytest.fixture
def node_with_old_npm():
    """A Node install whose own npm is 6 (it cannot read lockfileVersion 3): node runs the real Node,
    npm fails loudly if anything runs it."""
    root = tempfile.mkdtemp(prefix="fcbuild-oldnpm-")
    os.chmod(root, 0o755)
    npm_dir = os.path.join(root, "lib", "node_modules", "npm")
    os.makedirs(os.path.join(npm_dir, "bin"))
    os.makedirs(os.path.join(root, "bin"))
    with open(os.path.join(npm_dir, "package.json"), "w") as f:
        json.dump({"name": "npm", "version": "6.14.18"}, f)
    scripts = {
        os.path.join(npm_dir, "bin", "npm-cli.js"): "#!/bin/sh\necho 'the old npm ran' >&2\nexit 1\n",
        os.path.join(root, "bin", "node"): f'#!/bin/sh\nexec {shutil.which("node")} "$@"\n',
    }
    for path, text in scripts.items():
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    for dirpath, _dirs, _files in os.walk(root):
        os.chmod(dirpath, 0o755)
    os.symlink("../lib/node_modules/npm/bin/npm-cli.js", os.path.join(root, "bin", "npm"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_npm_that_cannot_read_the_lockfile_is_replaced_through_corepack(oss, registry, node_with_old_npm):
    env = {"FCBUILD_OSS_ENDPOINT": oss.endpoint, "FCBUILD_NODE_PATHS": node_with_old_npm, **NO_SIGNATURES}
    rt = start_runtime({**env, **registry_allowance()})
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
        result = build(oss, rt, "tiny", registry, node_version=node.lstrip("v"))
        pm = result["packageManager"]
        assert pm["name"] == "npm" and re.fullmatch(r"10\.\d+\.\d+", pm["version"]), pm
        log = rt.output()
        assert result["node"]["path"].startswith(node_with_old_npm), result["node"]
        assert f"[install] $ corepack npm@{pm['version']} ci" in log
        assert "package manager npm (corepack npm@10)" in log and "the old npm ran" not in log
    finally:
        assert rt.stop() == 0


def test_a_project_asking_for_node_22_builds_on_an_instance_that_has_node_20(oss, tmp_path):
    """`.nvmrc` says 22; this machine has Node 20 only. The runtime fetches the newest 22 from the
    registry (checked against its integrity), the build runs on it, and the result says where it came
    from; a cold instance takes the copy kept in OSS; a changed binary is replaced before it runs; with
    FCBUILD_NODE_DOWNLOAD=0 the answer is NotAvailable, naming the setting."""
    project = tmp_path / "needs-22"
    shutil.copytree(os.path.join(FIXTURES, "tiny"), project)
    (project / ".nvmrc").write_text("22\n")
    raw(oss, "src").put_object("needs-22.tar.gz", pack_tar(str(project)))
    command = "node build.js && node -e \"require('fs').writeFileSync('dist/node.txt', process.version)\""
    event = {"source": "oss://src/needs-22.tar.gz", "target": "oss://site/needs-22/", "build": {"command": command}}
    env = {"FCBUILD_OSS_ENDPOINT": oss.endpoint}
    first = start_runtime(env)
    try:
        resp = first.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        node = resp.json()["node"]
        assert node["version"].startswith("v22.") and node["from"] == "registry", node
        assert raw(oss, "site").get_object("needs-22/node.txt").read().decode() == node["version"]
        assert f"Node.js {node['version'][1:]} from the registry" in first.output()
        binary = os.path.join(node["path"], "node")
        with open(binary, "ab") as f:  # what a build running as the runtime's own user could do
            f.write(b"\0tampered")
        again = first.invoke(event, headers=CREDS, timeout=600).json()
        assert again["node"]["replaced"] == "it changed since it was unpacked" and again["node"]["from"] == "oss"
    finally:
        assert first.stop() == 0
    cold = start_runtime(env)  # another instance: its own workspace root, nothing unpacked yet
    try:
        resp = cold.invoke(event, headers=CREDS, timeout=600)
        assert resp.status == 200, resp.body
        assert resp.json()["node"]["from"] == "oss"
    finally:
        assert cold.stop() == 0
    off = start_runtime({**env, "FCBUILD_NODE_DOWNLOAD": "0"})
    try:
        resp = off.invoke(event, headers=CREDS, timeout=120)
        assert resp.status == 404 and resp.json()["errorType"] == "NotAvailable"
        assert "FCBUILD_NODE_DOWNLOAD=0" in resp.json()["errorMessage"]
    finally:
        assert off.stop() == 0
